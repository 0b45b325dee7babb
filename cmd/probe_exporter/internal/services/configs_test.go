package services

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/cmd/probe_exporter/internal/component"
	"github.com/probe-exporter/probe_exporter/decoder"
	"github.com/probe-exporter/probe_exporter/web"
)

// TestBrokenConfigs: configs that do not parse are reported with
// file:line by Load, --config.check, the landing page and /-/ready,
// without anything loaded into the kernel.
func TestBrokenConfigs(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "typo.yaml"), []byte("metrics:\n  counters:\n    - name: x\n      hlep: y\n"), 0o644)
	c := NewConfigs(context.Background(), ConfigsOptions{Dir: dir, Env: &decoder.Env{}})
	defer c.Close()
	err := c.Load()
	if err == nil || !strings.Contains(err.Error(), "typo.yaml:4") {
		t.Fatalf("Load: %v, want typo.yaml:4", err)
	}
	var out bytes.Buffer
	if c.Check(&out, false) {
		t.Error("Check passed with a broken config")
	}
	if got := out.String(); !strings.HasPrefix(got, "FAILED  typo\n        ") || !strings.Contains(got, "typo.yaml:4") {
		t.Errorf("Check printed %q", got)
	}
	var st web.Status
	c.Status(&st)
	if len(st.Configs) != 1 || st.Configs[0].Up || !strings.Contains(st.Configs[0].Error, "typo.yaml:4") || st.Configs[0].Source != filepath.Join(dir, "typo.yaml") {
		t.Errorf("status: %+v", st.Configs)
	}
	if err := c.Ready(); err == nil || err.Error() != "no config is up (typo failed)" {
		t.Errorf("Ready: %v", err)
	}
}

// TestNoConfigs: a directory without configs is an error naming it; the
// exporter is ready (nothing is configured to fail) and /maps needs
// --debug.
func TestNoConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, debug := range []bool{false, true} {
		c := NewConfigs(context.Background(), ConfigsOptions{Dir: dir, Env: &decoder.Env{}, Debug: debug})
		if err := c.Load(); err == nil || !strings.Contains(err.Error(), dir+" has no *.yaml") {
			t.Errorf("Load: %v", err)
		}
		if err := c.Ready(); err != nil {
			t.Errorf("Ready: %v", err)
		}
		if n := len(c.Routes()); (n == 1) != debug {
			t.Errorf("debug %v: %d routes", debug, n)
		}
		var out bytes.Buffer
		if !c.Check(&out, false) || out.Len() != 0 {
			t.Errorf("Check of no configs: %q", out.String())
		}
		c.Close()
	}
}

// What the group asks the configs for: a method whose signature drifted
// would silently stop being asked.
var (
	_ component.Component  = (*Configs)(nil)
	_ component.Reloader   = (*Configs)(nil)
	_ component.Router     = (*Configs)(nil)
	_ component.Statuser   = (*Configs)(nil)
	_ component.Readier    = (*Configs)(nil)
	_ io.Closer            = (*Configs)(nil)
	_ prometheus.Collector = (*Configs)(nil)
)
