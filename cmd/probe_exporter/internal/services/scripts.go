package services

import (
	"context"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/scripts"
	"github.com/probe-exporter/probe_exporter/web"
)

// Scripts serves the scripts of a directory at /NAME.
type Scripts struct {
	*scripts.Supervisor
}

// NewScripts finds the scripts of opts.Dir.
func NewScripts(opts scripts.Options) (*Scripts, error) {
	sup, err := scripts.New(opts)
	if err != nil {
		return nil, err
	}
	return &Scripts{sup}, nil
}

// Run starts autostart scripts and stops idle ones until ctx ends, then
// stops every script.
func (s *Scripts) Run(ctx context.Context) error { return s.Supervisor.Run(ctx) }

// Routes serves every path no other route takes as a script's name.
func (s *Scripts) Routes() []web.Route {
	return []web.Route{{Path: "/", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeScript(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	})}}
}

// Status lists the scripts on the landing page.
func (s *Scripts) Status(st *web.Status) {
	for _, sc := range s.Supervisor.Status() {
		kind := string(sc.Kind)
		if sc.OneShot {
			kind += " (one-shot)"
		}
		st.Scripts = append(st.Scripts, web.ScriptStatus{
			Name: sc.Name, Kind: kind, State: string(sc.State), LastError: sc.LastError,
			Restarts: sc.Restarts, Autostart: sc.Autostart, LastOutput: sc.LastOutput, LastOutputSize: sc.LastOutputSize,
		})
	}
}

// Kinds lists the kinds of the scripts found, for the capability plan.
func (s *Scripts) Kinds() []scripts.Kind {
	seen := map[scripts.Kind]bool{}
	var out []scripts.Kind
	for _, sc := range s.Supervisor.Status() {
		if !seen[sc.Kind] {
			seen[sc.Kind] = true
			out = append(out, sc.Kind)
		}
	}
	return out
}

var _ prometheus.Collector = (*Scripts)(nil)
