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

	"github.com/probe-exporter/probe_exporter/internal/testkit"
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

func text(s string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, s+" "+r.URL.Path) })
}

// TestRoutes: what each path answers, by the options that serve it.
func TestRoutes(t *testing.T) {
	ingest := Route{Path: "/ingest", Handler: text("ingest")}
	maps := Route{Path: "/maps", Handler: text("maps")}
	scripts := Route{Path: "/", Handler: text("script")}
	notReady := func() error { return errors.New("no config is up (a failed)") }
	for _, tc := range []struct {
		name         string
		opts         Options
		method, path string
		code         int
		body         string
	}{
		{"healthy", Options{}, "GET", "/-/healthy", 200, "Healthy\n"},
		{"healthy while not ready", Options{Ready: notReady}, "GET", "/-/healthy", 200, "Healthy\n"},
		{"ready without a check", Options{}, "GET", "/-/ready", 200, "Ready\n"},
		{"ready", Options{Ready: func() error { return nil }}, "GET", "/-/ready", 200, "Ready\n"},
		{"not ready", Options{Ready: notReady}, "GET", "/-/ready", 503, "Not ready: no config is up (a failed)\n"},
		{"reload needs POST", Options{Reload: func() error { return nil }}, "GET", "/-/reload", 405, "reload needs POST\n"},
		{"reload", Options{Reload: func() error { return nil }}, "POST", "/-/reload", 200, "Reloaded\n"},
		{"reload by PUT", Options{Reload: func() error { return nil }}, "PUT", "/-/reload", 200, "Reloaded\n"},
		{"reload fails", Options{Reload: func() error { return errors.New("c.yaml:3: bad") }}, "POST", "/-/reload", 500, "reload failed: c.yaml:3: bad\n"},
		{"no reload", Options{}, "POST", "/-/reload", 501, "reload is not available\n"},
		{"reload turned off", Options{Reload: func() error { return nil }, ReloadDisabled: true}, "POST", "/-/reload", 404, "reload over HTTP is turned off (--no-web.enable-reload); SIGHUP reloads\n"},
		{"a route", Options{Routes: []Route{ingest}}, "POST", "/ingest", 200, "ingest /ingest"},
		{"a route beside the fallback", Options{Routes: []Route{scripts, ingest, maps}}, "GET", "/maps", 200, "maps /maps"},
		{"the fallback", Options{Routes: []Route{ingest, scripts}}, "GET", "/x.sh", 200, "script /x.sh"},
		{"no fallback", Options{Routes: []Route{ingest}}, "GET", "/x.sh", 404, "404 page not found\n"},
		{"pprof needs debug", Options{}, "GET", "/debug/pprof/cmdline", 404, "404 page not found\n"},
		{"metrics path", Options{TelemetryPath: "/m"}, "GET", "/metrics", 404, "404 page not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testServer(t, tc.opts)
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			code, _, raw := testkit.Do(t, req)
			body := string(raw)
			if code != tc.code || body != tc.body {
				t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, code, body, tc.code, tc.body)
			}
		})
	}
}

// TestReloadCrossSite: what a page of another site can make a browser
// send to /-/reload is refused and does not reload; what curl and the
// reloaders send reloads.
func TestReloadCrossSite(t *testing.T) {
	reloads := 0
	srv := testServer(t, Options{Reload: func() error { reloads++; return nil }})
	for _, tc := range []struct {
		name    string
		headers map[string]string
		code    int
	}{
		{"cross-site form", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, 403},
		{"cross-site fetch without a body", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, 403},
		{"same-site, other origin", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://other.localhost"}, 403},
		{"Origin only, other host", map[string]string{"Origin": "http://evil.example"}, 403},
		{"form without Origin (old browser)", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 403},
		{"multipart form", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 403},
		{"text/plain form", map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, 403},
		{"curl -X POST", nil, 200},
		{"same origin", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"JSON body", map[string]string{"Content-Type": "application/json"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reloads
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/-/reload", strings.NewReader(""))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("%d %q, want %d", resp.StatusCode, b, tc.code)
			}
			if reloaded := reloads > before; reloaded != (tc.code == 200) {
				t.Errorf("reloaded: %v", reloaded)
			}
		})
	}
}

// TestDebugAndMetrics: /debug/pprof with Debug; /metrics serves the
// gatherer, or Metrics when set.
func TestDebugAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_gauge", Help: "A gauge."})
	g.Set(3)
	reg.MustRegister(g)
	srv := testServer(t, Options{Registry: reg, Debug: true})
	if code, _, body := testkit.Get(t, srv.URL+"/debug/pprof/cmdline"); code != 200 || body == "" {
		t.Errorf("/debug/pprof/cmdline with Debug: %d %q", code, body)
	}
	if code, _, body := testkit.Get(t, srv.URL+"/metrics"); code != 200 || !strings.Contains(body, "\ntest_gauge 3\n") {
		t.Errorf("/metrics: %d %q", code, body)
	}
	srv = testServer(t, Options{Registry: reg, Metrics: text("custom")})
	if code, _, body := testkit.Get(t, srv.URL+"/metrics"); code != 200 || body != "custom /metrics" {
		t.Errorf("/metrics by Metrics: %d %q", code, body)
	}
}

func TestLandingPage(t *testing.T) {
	srv := testServer(t, Options{Routes: []Route{{Path: "/exported-metrics", Handler: text("x"), Link: "Exported profile metrics"}, {Path: "/ingest", Handler: text("x")}}, Status: func() Status {
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
	code, _, page := testkit.Get(t, srv.URL+"/")
	if code != 200 {
		t.Fatalf("landing page: %d", code)
	}
	for _, want := range []string{
		"probe_exporter, version test", `<a href="/metrics">Metrics</a>`, `<a href="/exported-metrics">Exported profile metrics</a>`,
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
	if code, _, _ := testkit.Get(t, srv.URL+"/metrics"); code != 503 {
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

// TestLandingPageDefaults: without a Status the page still renders, with
// the version and no configs; unlisted routes get no link.
func TestLandingPageDefaults(t *testing.T) {
	srv := testServer(t, Options{Routes: []Route{{Path: "/ingest", Handler: text("x")}}})
	code, _, page := testkit.Get(t, srv.URL+"/")
	if code != 200 {
		t.Fatalf("landing page: %d", code)
	}
	for _, want := range []string{"version", `<td colspan="7">none</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("landing page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, `href="/ingest"`) {
		t.Errorf("landing page links /ingest, which has no Link:\n%s", page)
	}
}
