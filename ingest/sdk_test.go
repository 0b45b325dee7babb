package ingest

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/grafana/pyroscope-go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/rules"
)

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// spinPyroscope spins until the process has used cpu more CPU time (not
// wall time: on a loaded machine that may be much longer), or a generous
// wall-clock bound passes.
//
//go:noinline
func spinPyroscope(cpu time.Duration) int {
	n := 0
	until, wall := cpuTime()+cpu, time.Now().Add(2*time.Minute)
	for cpuTime() < until && time.Now().Before(wall) {
		for i := 0; i < 1000; i++ {
			n += i ^ n
		}
	}
	return n
}

// TestPyroscopeGoSDK pushes real profiles with Pyroscope's Go SDK, CPU
// and those it sends with sampleRate=0 (goroutines, mutex, block), each
// answered 200, and checks that a rule counts CPU in seconds and the
// goroutines as their average.
func TestPyroscopeGoSDK(t *testing.T) {
	s, err := rules.Parse("r.yaml", []byte(`metrics-export-rules:
  sdk_cpu_seconds:
    expr: 'sdk.app.cpu{env="prod"}'
  sdk_spin_seconds:
    expr: 'sdk.app.cpu'
    node: 'spinPyroscope'
  sdk_goroutines:
    expr: 'sdk.app.goroutines'
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
		ProfileTypes: []pyroscope.ProfileType{pyroscope.ProfileCPU, pyroscope.ProfileGoroutines,
			pyroscope.ProfileMutexCount, pyroscope.ProfileBlockCount},
		UploadRate: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	spinPyroscope(2500 * time.Millisecond)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	total := testutil.ToFloat64(testutilRule(s, "sdk_cpu_seconds"))
	spin := testutil.ToFloat64(testutilRule(s, "sdk_spin_seconds"))
	goroutines := testutil.ToFloat64(testutilRule(s, "sdk_goroutines_average"))
	t.Logf("pushed CPU: %.2fs total, %.2fs in spinPyroscope; %v goroutines", total, spin, goroutines)
	if goroutines < 1 {
		t.Errorf("goroutines pushed: %v, want at least this one", goroutines)
	}
	if spin < 0.5 || total > 10 || spin > total {
		t.Fatalf("implausible: total %v, spin %v (spun 2.5s of CPU)", total, spin)
	}
}
