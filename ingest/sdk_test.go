package ingest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grafana/pyroscope-go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/rules"
)

//go:noinline
func spinPyroscope(until time.Time) int {
	n := 0
	for time.Now().Before(until) {
		for i := 0; i < 1000; i++ {
			n += i ^ n
		}
	}
	return n
}

// TestPyroscopeGoSDK pushes a real CPU profile with Pyroscope's Go SDK and
// checks that a rule counts it in seconds.
func TestPyroscopeGoSDK(t *testing.T) {
	s, err := rules.Parse("r.yaml", []byte(`metrics-export-rules:
  sdk_cpu_seconds:
    expr: 'sdk.app.cpu{env="prod"}'
  sdk_spin_seconds:
    expr: 'sdk.app.cpu'
    node: 'spinPyroscope'
`))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(s, Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Errorf("SDK push %s -> %d %s", r.URL, rec.Code, rec.Body.String())
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer srv.Close()
	p, err := pyroscope.Start(pyroscope.Config{
		ApplicationName: "sdk.app",
		ServerAddress:   srv.URL,
		Tags:            map[string]string{"env": "prod"},
		ProfileTypes:    []pyroscope.ProfileType{pyroscope.ProfileCPU},
		UploadRate:      time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	spinPyroscope(time.Now().Add(2500 * time.Millisecond))
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	total := testutil.ToFloat64(testutilRule(s, "sdk_cpu_seconds"))
	spin := testutil.ToFloat64(testutilRule(s, "sdk_spin_seconds"))
	t.Logf("pushed CPU: %.2fs total, %.2fs in spinPyroscope", total, spin)
	if spin < 0.5 || total > 10 || spin > total {
		t.Fatalf("implausible: total %v, spin %v (spun 2.5s)", total, spin)
	}
}
