// Package web serves the exporter's HTTP endpoints: /metrics, the landing
// page (rendered from a Status), /-/healthy, /-/ready, /-/reload, the
// routes of the other parts, and with --debug /debug/pprof; TLS, basic
// auth and socket activation come from exporter-toolkit's web config.
package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
)

// Status is what the landing page shows.
type Status struct {
	Version string
	Configs []ConfigStatus
	Scripts []ScriptStatus
	Rules   []RuleStatus
	// Profiler is the built-in profiler's, nil when it does not run.
	Profiler *ProfilerStatus
	Reload   ReloadStatus
	Links    []Link
	// Capabilities are the configured features' needs and whether they
	// are met.
	Capabilities []CapabilityStatus
}

// CapabilityStatus is one feature's capability needs on the landing page.
type CapabilityStatus struct {
	Feature, Caps, Why string
	// Missing names the capabilities the feature lacks; empty when met.
	Missing string
}

// ConfigStatus is one config on the landing page.
type ConfigStatus struct {
	Name, Source string
	Up           bool
	Error        string
	Programs     []ProgramStatus
	// Scraped is set once its maps were scraped; the figures below are
	// the last scrape's.
	Scraped        bool
	Series         int
	ScrapeDuration time.Duration
	ScrapeBytes    int64
	DecoderErrors  float64
	Histograms     []HistogramStatus
}

// RuleStatus is one profile export rule on the landing page.
type RuleStatus struct {
	Text string
	// Series are the label sets it holds; Dropped the profiles it did
	// not count because they would have made one over the bound.
	Series, Dropped float64
}

// ProfilerStatus is the built-in profiler on the landing page.
type ProfilerStatus struct {
	Targets []ProfileTargetStatus
	// Samples drained, lost (no stack) and truncated (root frames
	// missing) since the start.
	Samples, Lost, Truncated float64
	// Python lists the CPython interpreters met, as "version result: n"
	// (named, unsupported, mismatch).
	Python []string
}

// ProfileTargetStatus is one profile target on the landing page.
type ProfileTargetStatus struct {
	App, Selector string
	OffCPU        bool
	// Processes it selects now.
	Processes int
}

// ProgramStatus is one program on the landing page.
type ProgramStatus struct {
	Name, Section, Attach string
	Attached              bool
	Error                 string
}

// ScriptStatus is one script on the landing page.
type ScriptStatus struct {
	Name, Kind, State, LastError string
	Restarts                     int
	Autostart                    bool
	LastOutput                   time.Time
	LastOutputSize               int
}

// LastOutputSizeBytes is LastOutputSize for formatting.
func (s ScriptStatus) LastOutputSizeBytes() int64 { return int64(s.LastOutputSize) }

// ReloadStatus says how the last reload went.
type ReloadStatus struct {
	At    time.Time
	Error string
}

// Link is an extra endpoint listed on the landing page.
type Link struct{ Path, Text string }

// Route is an endpoint of one of the exporter's parts. The Path "/"
// serves every path that no other route takes (scripts at /NAME); the
// landing page keeps "/" itself.
type Route struct {
	Path    string
	Handler http.Handler
	// Link, if set, lists the route on the landing page with this text.
	Link string
}

// Options configure the Handler.
type Options struct {
	Registry *prometheus.Registry
	// Gatherer is what /metrics serves (the registry plus map metrics).
	Gatherer prometheus.Gatherer
	// Metrics, if set, serves /metrics instead of promhttp over Gatherer.
	Metrics       http.Handler
	TelemetryPath string
	Logger        *slog.Logger
	// Status renders the landing page.
	Status func() Status
	// Debug enables /debug/pprof.
	Debug bool
	// Reload is called by POST /-/reload.
	Reload func() error
	// ReloadDisabled answers /-/reload 404 (--no-web.enable-reload);
	// SIGHUP still reloads.
	ReloadDisabled bool
	// Ready reports readiness for /-/ready: nil when ready, else why not.
	Ready func() error
	// MaxRequests caps concurrent requests to /metrics (0: unlimited).
	MaxRequests int
	// Routes of the other parts (/ingest, /exported-metrics, /maps,
	// scripts).
	Routes []Route
}

// Handler builds the HTTP handler.
func Handler(opts Options) http.Handler {
	mux := http.NewServeMux()
	metrics := opts.Metrics
	if metrics == nil {
		metrics = promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog:            slog.NewLogLogger(opts.Logger.Handler(), slog.LevelError),
			ErrorHandling:       promhttp.ContinueOnError,
			MaxRequestsInFlight: opts.MaxRequests,
			Registry:            opts.Registry,
		})
	}
	mux.Handle(opts.TelemetryPath, promhttp.InstrumentMetricHandler(opts.Registry, metrics))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready != nil {
			if err := opts.Ready(); err != nil {
				http.Error(w, "Not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "Ready")
	})
	mux.Handle("/-/reload", reloadHandler(opts))
	if opts.Debug {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	}
	var fallback http.Handler
	for _, r := range opts.Routes {
		if r.Path == "/" {
			fallback = r.Handler
			continue
		}
		mux.Handle(r.Path, r.Handler)
	}
	landing := landingHandler(opts)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			landing.ServeHTTP(w, r)
			return
		}
		if fallback != nil {
			fallback.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
	return mux
}

// reloadHandler serves /-/reload: POST (or PUT) reloads, unless the
// request is one a page of another site can make a browser send.
//
// A cross-site HTML form can POST here with no script at all, and a
// script can fetch() a "simple" request (no custom headers, one of the
// form content types) without a CORS preflight. Such requests are refused
// (403) in two ways, of which either suffices with current browsers:
//   - net/http's CrossOriginProtection: Sec-Fetch-Site (sent by every
//     browser since 2023) not same-origin or none, or else an Origin whose
//     host is not the Host the request was sent to;
//   - a body of a type a form sends (application/x-www-form-urlencoded,
//     multipart/form-data, text/plain): a form always sends one of them,
//     which covers browsers that send neither header on a form POST.
//
// Neither needs anything of a client that is not a browser: `curl -X POST
// http://host:9900/-/reload`, Prometheus' and the Prometheus Operator's
// reloaders send no Origin, no Sec-Fetch-Site and no body. (`curl -d`
// sends a form type: use -X POST without -d.) This does not stop a page
// that makes its own host name resolve to the exporter (DNS rebinding):
// basic auth from the web config does.
func reloadHandler(opts Options) http.Handler {
	if opts.ReloadDisabled {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "reload over HTTP is turned off (--no-web.enable-reload); SIGHUP reloads", http.StatusNotFound)
		})
	}
	reload := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "reload needs POST", http.StatusMethodNotAllowed)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, _ := mime.ParseMediaType(ct)
			switch strings.ToLower(mt) {
			case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain", "":
				http.Error(w, "reload refuses a body of the types HTML forms send ("+ct+"): POST without a body, as curl -X POST does", http.StatusForbidden)
				return
			}
		}
		if opts.Reload == nil {
			http.Error(w, "reload is not available", http.StatusNotImplemented)
			return
		}
		if err := opts.Reload(); err != nil {
			http.Error(w, "reload failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "Reloaded")
	})
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "reload refuses cross-origin browser requests (Sec-Fetch-Site or Origin)", http.StatusForbidden)
	}))
	return csrf.Handler(reload)
}

// Server is the HTTP server as a component of the exporter: Run serves
// until ctx ends, then shuts down gracefully.
type Server struct {
	Handler http.Handler
	// Flags are exporter-toolkit's: listen addresses, systemd socket
	// activation, and the web config file (TLS, basic auth).
	Flags  *web.FlagConfig
	Logger *slog.Logger
	// MaxConnections bounds the connections open at once (0: no bound);
	// see connLimiter.
	MaxConnections int
	// Registerer, if set, gets the connection metrics.
	Registerer prometheus.Registerer
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	return s.serve(ctx, func(srv *http.Server) error {
		return web.ListenAndServe(srv, s.Flags, s.Logger)
	})
}

// Serve serves on listeners (tests listen on port 0) until ctx ends,
// with the TLS and basic auth of the web config flags name.
func (s *Server) Serve(ctx context.Context, listeners []net.Listener) error {
	return s.serve(ctx, func(srv *http.Server) error {
		return web.ServeMultiple(listeners, srv, s.Flags, s.Logger)
	})
}

func (s *Server) serve(ctx context.Context, listen func(*http.Server) error) error {
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	if s.MaxConnections > 0 {
		l := newConnLimiter(s.MaxConnections)
		srv.ConnState = l.connState
		if s.Registerer != nil {
			if err := s.Registerer.Register(l); err != nil {
				return fmt.Errorf("registering the connection metrics: %w", err)
			}
			defer s.Registerer.Unregister(l)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- listen(srv) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("shutting down HTTP server: %w", err)
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

var landingTmpl = template.Must(template.New("landing").Funcs(template.FuncMap{
	"since": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"lines": func(s string) []string { return strings.Split(s, "\n") },
	"bytes": formatBytes,
	"ms": func(d time.Duration) string {
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
	},
	"num": func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>probe_exporter</title>
<link rel="icon" href="data:,">
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}.ok{color:#080}.bad{color:#b00}pre{margin:0;white-space:pre-wrap}.n{text-align:right}.hist{display:inline-block;margin:0 1em 1em 0}.hist svg{display:block;background:#fafafa;border:1px solid #ddd}.hist rect{fill:#3a6ea5}.hist text{font-size:9px;fill:#333}.muted{color:#777}</style>
</head><body>
<h1>probe_exporter</h1>
<p>{{.Version}}</p>
<ul>{{range .Links}}<li><a href="{{.Path}}">{{.Text}}</a></li>{{end}}</ul>
{{if .Reload.Error}}<p class="bad">Last reload failed: {{.Reload.Error}}</p>{{end}}
<h2>Configs</h2>
<table><tr><th>config</th><th>source</th><th>state</th><th>programs</th><th>series</th><th>last scrape</th><th>decoder errors</th></tr>
{{range .Configs}}<tr><td>{{.Name}}</td><td>{{.Source}}</td>
<td>{{if .Up}}<span class="ok">up</span>{{else}}<span class="bad">failed</span>{{if .Error}}<pre>{{.Error}}</pre>{{end}}{{end}}</td>
<td><table>{{range .Programs}}<tr><td>{{.Name}}</td><td>{{.Section}}</td><td>{{.Attach}}</td><td>{{if .Attached}}<span class="ok">attached</span>{{else}}<span class="bad">not attached</span><pre>{{.Error}}</pre>{{end}}</td></tr>{{end}}</table></td>
{{if .Scraped}}<td class="n">{{.Series}}</td><td>{{ms .ScrapeDuration}}{{if .ScrapeBytes}}, {{bytes .ScrapeBytes}}{{end}}</td>{{else}}<td class="n muted">-</td><td class="muted">not scraped yet</td>{{end}}
<td class="n">{{num .DecoderErrors}}</td></tr>
{{else}}<tr><td colspan="7">none</td></tr>{{end}}
</table>
{{range $c := .Configs}}{{if .Histograms}}<h3>Histograms of {{$c.Name}}</h3>
{{range .Histograms}}{{$d := .Draw}}<figure class="hist"><svg xmlns="http://www.w3.org/2000/svg" width="{{$d.Width}}" height="{{$d.Height}}" viewBox="0 0 {{$d.Width}} {{$d.Height}}" role="img" aria-label="buckets of {{.Name}}">
{{range $d.Bars}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{end}}<line x1="0" y1="86.5" x2="{{$d.Width}}" y2="86.5" stroke="#999"/>
{{range $d.Ticks}}<text x="{{.X}}" y="98" text-anchor="middle">{{.Label}}</text>
{{end}}<text x="{{$d.Width}}" y="108" text-anchor="end" class="muted">le, {{$d.Axis}} axis; count on a log scale, top {{$d.Max}}</text>
</svg><figcaption>{{.Name}}: {{.Series}} series, {{$d.Total}} observations</figcaption></figure>
{{end}}{{end}}{{end}}
{{if .Scripts}}<h2>Scripts</h2>
<table><tr><th>script</th><th>kind</th><th>state</th><th>restarts</th><th>last output</th><th>size</th><th>last error</th></tr>
{{range .Scripts}}<tr><td><a href="/{{.Name}}">{{.Name}}</a>{{if .Autostart}} (autostart){{end}}</td><td>{{.Kind}}</td><td>{{.State}}</td><td class="n">{{.Restarts}}</td><td>{{since .LastOutput}}</td><td class="n">{{if .LastOutputSize}}{{bytes .LastOutputSizeBytes}}{{end}}</td><td><pre>{{.LastError}}</pre></td></tr>{{end}}
</table>{{end}}
{{if .Capabilities}}<h2>Capabilities</h2>
<table><tr><th>feature</th><th>kept</th><th>state</th><th>why</th></tr>
{{range .Capabilities}}<tr><td>{{.Feature}}</td><td>{{.Caps}}</td><td>{{if .Missing}}<span class="bad">cannot work: needs {{.Missing}}</span>{{else}}<span class="ok">ok</span>{{end}}</td><td>{{.Why}}</td></tr>{{end}}
</table>{{end}}
{{with .Profiler}}<h2>Profiler</h2>
<table><tr><th>app</th><th>selects</th><th>off-CPU</th><th>processes now</th></tr>
{{range .Targets}}<tr><td>{{.App}}</td><td>{{.Selector}}</td><td>{{if .OffCPU}}yes{{else}}no{{end}}</td><td class="n">{{if .Processes}}{{.Processes}}{{else}}<span class="bad">0</span>{{end}}</td></tr>{{end}}
</table>
<p>Samples: {{num .Samples}}, lost {{num .Lost}}, truncated {{num .Truncated}}. Python interpreters: {{range .Python}}{{.}}; {{else}}none met.{{end}}</p>{{end}}
{{if .Rules}}<h2>Profile export rules</h2>
<table><tr><th>rule</th><th>series</th><th>dropped</th></tr>
{{range .Rules}}<tr><td>{{.Text}}</td><td class="n">{{num .Series}}</td><td class="n">{{num .Dropped}}</td></tr>{{end}}
</table>{{end}}
</body></html>
`))

// formatBytes writes a size in B, KiB or MiB.
func formatBytes(n int64) string {
	switch f := float64(n); {
	case f >= 1<<20:
		return strconv.FormatFloat(f/(1<<20), 'f', 1, 64) + " MiB"
	case f >= 1<<10:
		return strconv.FormatFloat(f/(1<<10), 'f', 1, 64) + " KiB"
	default:
		return strconv.FormatInt(n, 10) + " B"
	}
}

// landingPolicy forbids the landing page every resource but its inline
// style and drawings: nothing is loaded from elsewhere, and nothing it
// shows can run as script.
const landingPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func landingHandler(opts Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", landingPolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		var st Status
		if opts.Status != nil {
			st = opts.Status()
		}
		if st.Version == "" {
			st.Version = version.Info()
		}
		links := []Link{{Path: opts.TelemetryPath, Text: "Metrics"}}
		for _, r := range opts.Routes {
			if r.Link != "" {
				links = append(links, Link{Path: r.Path, Text: r.Link})
			}
		}
		st.Links = append(links, st.Links...)
		if err := landingTmpl.Execute(w, st); err != nil {
			opts.Logger.Error("rendering landing page", "err", err)
		}
	})
}
