package web

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func testServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Registry == nil {
		opts.Registry = reg
	}
	if opts.Gatherer == nil {
		opts.Gatherer = opts.Registry
	}
	if opts.TelemetryPath == "" {
		opts.TelemetryPath = "/metrics"
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(Handler(opts))
	t.Cleanup(srv.Close)
	return srv
}

func fetch(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRoutes(t *testing.T) {
	reloads := 0
	ready := errors.New("no config is up (a failed)")
	srv := testServer(t, Options{
		Reload:   func() error { reloads++; return nil },
		Ready:    func() error { return ready },
		Maps:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "maps") }),
		Fallback: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "script "+r.URL.Path) }),
		Extra:    map[string]http.Handler{"/ingest": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ingest") })},
	})
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/-/healthy", 200, "Healthy\n"},
		{"GET", "/-/ready", 503, "Not ready: no config is up (a failed)\n"},
		{"GET", "/-/reload", 405, "reload needs POST\n"},
		{"POST", "/-/reload", 200, "Reloaded\n"},
		{"GET", "/maps", 200, "script /maps"}, // not a route without Debug
		{"GET", "/ingest", 200, "ingest"},
		{"GET", "/x.sh", 200, "script /x.sh"},
	} {
		code, body := fetch(t, tc.method, srv.URL+tc.path)
		if code != tc.code || body != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, code, body, tc.code, tc.body)
		}
	}
	if reloads != 1 {
		t.Errorf("%d reloads, want 1", reloads)
	}
	ready = nil
	if code, body := fetch(t, "GET", srv.URL+"/-/ready"); code != 200 || body != "Ready\n" {
		t.Errorf("ready: %d %q", code, body)
	}
}

func TestReloadFailureAndNoFallback(t *testing.T) {
	srv := testServer(t, Options{Debug: true,
		Reload: func() error { return errors.New("c.yaml:3: bad") },
		Maps:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "maps") }),
	})
	if code, body := fetch(t, "POST", srv.URL+"/-/reload"); code != 500 || body != "reload failed: c.yaml:3: bad\n" {
		t.Errorf("failed reload: %d %q", code, body)
	}
	if code, _ := fetch(t, "GET", srv.URL+"/nothing"); code != 404 {
		t.Errorf("no fallback: %d, want 404", code)
	}
	if code, body := fetch(t, "GET", srv.URL+"/maps"); code != 200 || body != "maps" {
		t.Errorf("/maps with Debug: %d %q", code, body)
	}
}

func TestLandingPage(t *testing.T) {
	srv := testServer(t, Options{Status: func() Status {
		return Status{
			Version: "probe_exporter, version test",
			Configs: []ConfigStatus{
				{Name: "good", Source: "embedded", Up: true, Programs: []ProgramStatus{{Name: "p", Section: "tracepoint/a/b", Attach: "tracepoint a/b", Attached: true}}},
				{Name: "bad<x>", Source: "/etc/x.yaml", Error: "x.yaml:3: unknown field", Programs: []ProgramStatus{{Name: "k", Section: "kprobe/f", Error: "kernel has no function f"}}},
			},
			Scripts:      []ScriptStatus{{Name: "a.sh", Kind: "exec", State: "idle", Autostart: true}},
			Capabilities: []CapabilityStatus{{Feature: "bpftrace scripts", Missing: "CAP_SYS_ADMIN", Why: "BTF"}},
			Reload:       ReloadStatus{At: time.Now(), Error: "x.yaml:3: unknown field"},
		}
	}})
	code, page := fetch(t, "GET", srv.URL+"/")
	if code != 200 {
		t.Fatalf("landing page: %d", code)
	}
	for _, want := range []string{
		"probe_exporter, version test", `<a href="/metrics">Metrics</a>`,
		"Last reload failed: x.yaml:3: unknown field",
		`<span class="ok">attached</span>`, "kernel has no function f", "bad&lt;x&gt;",
		`<a href="/a.sh">a.sh</a> (autostart)`,
		"<td>bpftrace scripts</td>", "cannot work: needs CAP_SYS_ADMIN",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("landing page lacks %q:\n%s", want, page)
		}
	}
}

// TestMaxRequests: over the cap, scrapes are refused with 503 rather than
// queued, and the others are served.
func TestMaxRequests(t *testing.T) {
	reg := prometheus.NewRegistry()
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	reg.MustRegister(blockingCollector{entered: entered, release: release})
	srv := testServer(t, Options{Registry: reg, MaxRequests: 2})
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/metrics")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	<-entered
	<-entered
	if code, _ := fetch(t, "GET", srv.URL+"/metrics"); code != 503 {
		t.Errorf("third concurrent scrape: %d, want 503", code)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("held scrape answered %d", c)
		}
	}
}

type blockingCollector struct {
	entered chan struct{}
	release chan struct{}
}

func (blockingCollector) Describe(chan<- *prometheus.Desc) {}

func (b blockingCollector) Collect(ch chan<- prometheus.Metric) {
	b.entered <- struct{}{}
	<-b.release
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("x", "x", nil, nil), prometheus.GaugeValue, 1)
}
