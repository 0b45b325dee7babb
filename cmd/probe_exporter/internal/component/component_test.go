package component

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/web"
)

// journal records what components did, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, fmt.Sprintf(format, args...))
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.events...)
}

// fake is a component with every optional interface.
type fake struct {
	name      string
	j         *journal
	runErr    error         // returned by Run at once
	stuck     chan struct{} // Run ignores ctx until closed
	reloadErr error
	stopErr   error // returned by Run once stopped
	started   chan struct{}
}

func newFake(name string, j *journal) *fake {
	return &fake{name: name, j: j, started: make(chan struct{})}
}

func (f *fake) Run(ctx context.Context) error {
	f.j.add("run %s", f.name)
	close(f.started)
	if f.runErr != nil {
		return f.runErr
	}
	if f.stuck != nil {
		<-f.stuck
	}
	<-ctx.Done()
	f.j.add("stop %s", f.name)
	return f.stopErr
}

func (f *fake) Reload() error {
	f.j.add("reload %s", f.name)
	return f.reloadErr
}

func (f *fake) Close() error {
	f.j.add("close %s", f.name)
	return nil
}

func (f *fake) Routes() []web.Route {
	return []web.Route{{Path: "/" + f.name, Handler: http.NotFoundHandler()}}
}

func (f *fake) Status(st *web.Status) { st.Rules = append(st.Rules, web.RuleStatus{Text: f.name}) }

// plain is a component with only Run.
type plain struct{}

func (plain) Run(ctx context.Context) error { return Idle(ctx) }

func group(j *journal, names ...string) (*Group, []*fake) {
	g := New(Options{Namespace: "test", StopTimeout: time.Minute})
	var fs []*fake
	for _, n := range names {
		f := newFake(n, j)
		fs = append(fs, f)
		g.Add(n, f)
	}
	g.Add("plain", plain{})
	return g, fs
}

func waitStarted(t *testing.T, fs ...*fake) {
	t.Helper()
	for _, f := range fs {
		select {
		case <-f.started:
		case <-time.After(time.Minute):
			t.Fatalf("%s did not start", f.name)
		}
	}
}

// TestRunStopsInReverseOrder: ctx's end stops every component, the last
// added first; Close follows in the same order.
func TestRunStopsInReverseOrder(t *testing.T) {
	j := &journal{}
	g, fs := group(j, "a", "b", "c")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	waitStarted(t, fs...)
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := j.list()[3:] // the runs start in any order
	want := []string{"stop c", "stop b", "stop a", "close c", "close b", "close a"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events after the start: %q, want %q", got, want)
	}
}

// TestFailingComponent: a component whose Run fails stops the others and
// its error is Run's, named.
func TestFailingComponent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing int
		want    string
	}{
		{"the first", 0, "a: listen tcp :1: bind: permission denied"},
		{"the last", 2, "c: listen tcp :1: bind: permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			g := New(Options{StopTimeout: time.Minute})
			var others []*fake
			for i, n := range []string{"a", "b", "c"} {
				f := newFake(n, j)
				if i == tc.failing {
					f.runErr = errors.New("listen tcp :1: bind: permission denied")
				} else {
					others = append(others, f)
				}
				g.Add(n, f)
			}
			err := g.Run(context.Background())
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Run: %v, want %q", err, tc.want)
			}
			for _, f := range others {
				if !contains(j.list(), "stop "+f.name) {
					t.Errorf("%s was not stopped: %q", f.name, j.list())
				}
			}
		})
	}
}

// TestStopError: an error a component meets while stopping is Run's.
func TestStopError(t *testing.T) {
	j := &journal{}
	g, fs := group(j, "a", "http")
	fs[1].stopErr = errors.New("shutting down HTTP server: context deadline exceeded")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	waitStarted(t, fs...)
	cancel()
	if err := <-errc; err == nil || err.Error() != "http: shutting down HTTP server: context deadline exceeded" {
		t.Errorf("Run: %v", err)
	}
}

// TestBoundedStop: a component that ignores its context does not hold
// Run past the stop timeout; the others still stop, and Run names it.
func TestBoundedStop(t *testing.T) {
	j := &journal{}
	g := New(Options{StopTimeout: 50 * time.Millisecond})
	a, b, c := newFake("a", j), newFake("stuck", j), newFake("c", j)
	b.stuck = make(chan struct{})
	defer close(b.stuck)
	g.Add("a", a)
	g.Add("stuck", b)
	g.Add("c", c)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	waitStarted(t, a, b, c)
	cancel()
	var err error
	select {
	case err = <-errc:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after the stop timeout")
	}
	// Under load a and c may not have returned yet either when the time
	// is up; the stuck one never has.
	if err == nil || !strings.Contains(err.Error(), "stuck") || !strings.HasSuffix(err.Error(), "did not stop within 50ms") {
		t.Errorf("Run: %v, want the stuck component named", err)
	}
	// The others were told to stop all the same.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		ev := j.list()
		if contains(ev, "stop a") && contains(ev, "stop c") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a and c were not stopped: %q", ev)
		}
	}
}

// TestReload: every Reloader is reloaded in order, even after one fails;
// the result is recorded for the landing page and the reload metrics.
func TestReload(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing string
		wantErr string
		wantOK  float64
	}{
		{name: "all succeed", wantOK: 1},
		{name: "one fails", failing: "a", wantErr: "a.yaml:3: bad", wantOK: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			g, fs := group(j, "a", "b")
			for _, f := range fs {
				if f.name == tc.failing {
					f.reloadErr = errors.New(f.name + ".yaml:3: bad")
				}
			}
			err := g.Reload()
			if fmt.Sprint(err) != fmt.Sprint(errOrNil(tc.wantErr)) {
				t.Errorf("Reload: %v, want %q", err, tc.wantErr)
			}
			if got, want := j.list(), []string{"reload a", "reload b"}; !reflect.DeepEqual(got, want) {
				t.Errorf("reloads: %q, want %q", got, want)
			}
			st := g.Status()
			if st.Reload.Error != tc.wantErr || st.Reload.At.IsZero() {
				t.Errorf("status of the reload: %+v, want error %q", st.Reload, tc.wantErr)
			}
			if got := testutil.ToFloat64(g.reloadOK); got != tc.wantOK {
				t.Errorf("test_config_last_reload_successful %v, want %v", got, tc.wantOK)
			}
		})
	}
}

func errOrNil(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// TestRoutesStatusRegister: routes, status and metrics are gathered from
// the components that have them, in order.
func TestRoutesStatusRegister(t *testing.T) {
	j := &journal{}
	g, _ := group(j, "a", "b")
	var paths []string
	for _, r := range g.Routes() {
		paths = append(paths, r.Path)
	}
	if want := []string{"/a", "/b"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("routes %q, want %q", paths, want)
	}
	if st := g.Status(); !reflect.DeepEqual(st.Rules, []web.RuleStatus{{Text: "a"}, {Text: "b"}}) {
		t.Errorf("status from %v, want a then b", st.Rules)
	}
	g.Add("metrics", collecting{plain{}})
	reg := prometheus.NewRegistry()
	if err := g.Register(reg); err != nil {
		t.Fatal(err)
	}
	g.Record(nil)
	want := `# HELP test_config_last_reload_successful Whether the last configuration reload succeeded.
# TYPE test_config_last_reload_successful gauge
test_config_last_reload_successful 1
# HELP test_component_up A component's metric.
# TYPE test_component_up gauge
test_component_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "test_config_last_reload_successful", "test_component_up"); err != nil {
		t.Error(err)
	}
}

// TestReady: the group is ready when every Readier is.
func TestReady(t *testing.T) {
	g := New(Options{})
	g.Add("plain", plain{})
	if err := g.Ready(); err != nil {
		t.Errorf("no Readier: %v", err)
	}
	g.Add("up", readier{nil})
	g.Add("down", readier{errors.New("no config is up (a failed)")})
	if err := g.Ready(); err == nil || err.Error() != "no config is up (a failed)" {
		t.Errorf("Ready: %v", err)
	}
}

type readier struct{ err error }

func (r readier) Run(ctx context.Context) error { return Idle(ctx) }
func (r readier) Ready() error                  { return r.err }

var componentUp = prometheus.NewDesc("test_component_up", "A component's metric.", nil, nil)

type collecting struct{ plain }

func (collecting) Describe(ch chan<- *prometheus.Desc) { ch <- componentUp }
func (collecting) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(componentUp, prometheus.GaugeValue, 1)
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
