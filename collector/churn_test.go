package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/probe-exporter/probe_exporter/config"
)

// TestChurn: keys come and go every scrape (pids, sockets); each scrape
// shows exactly the keys in the map, new ones sorted in among the old,
// and the caches are bounded by eviction. Parallel scrapes over HTTP run
// meanwhile (for the race detector: frames are written while the caches
// grow and are rebuilt).
func TestChurn(t *testing.T) {
	const live, step, rounds = 50, 7, 200
	m := newMap(t, ebpf.Hash, 8, 1024)
	cfg := config.Config{Name: "t", Metrics: config.Metrics{
		Counters: []config.Counter{{Name: "c_total", Help: "h", Labels: []config.Label{uintLabel("k", 4), uintLabel("pid", 4)}}},
	}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c_total": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	reg := prometheus.NewRegistry()
	h := c.Handler(reg, HandlerOpts{})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
				rec := w.Body.String()
				if err := expfmt.NewDecoder(strings.NewReader(rec), expfmt.NewFormat(expfmt.TypeTextPlain)).Decode(new(dto.MetricFamily)); err != nil && rec != "" {
					t.Errorf("parsing a scrape: %v", err)
					return
				}
			}
		}()
	}
	key := func(k uint32) []byte { return cat(u32(k), u32(k%3)) }
	for r := uint32(0); r < rounds; r++ {
		for k := r * step; k < r*step+live; k++ {
			put(t, m, key(k), uint64(k+r))
		}
		if r > 0 {
			for k := (r - 1) * step; k < r*step; k++ {
				if err := m.Delete(key(k)); err != nil {
					t.Fatal(err)
				}
			}
		}
		var want strings.Builder
		keys := make([]string, 0, live)
		for k := r * step; k < r*step+live; k++ {
			keys = append(keys, fmt.Sprintf("probe_exporter_c_total k=%d pid=%d %d\n", k, k%3, k+r))
		}
		sort.Strings(keys) // as the registry orders label values (a space sorts before digits)
		for _, k := range keys {
			want.WriteString(k)
		}
		if got := scrape(t, c, "probe_exporter_c_total"); got != want.String() {
			t.Fatalf("round %d:\n%s\nwant:\n%s", r, got, want.String())
		}
	}
	close(stop)
	wg.Wait()
	mm := cc.metrics[0]
	// Without eviction there would be rounds*step+live series.
	if n := mm.series.len(); n > 64*2*step+live {
		t.Errorf("%d series cached after %d rounds of %d new keys", n, rounds, step)
	}
}

// TestDropPID: the keys of an exited process leave the map and the
// scrape; a key seen again is decoded afresh.
func TestDropPID(t *testing.T) {
	m := newMap(t, ebpf.Hash, 8, 16)
	put(t, m, cat(u32(1), u32(100)), 1)
	put(t, m, cat(u32(2), u32(100)), 2)
	put(t, m, cat(u32(1), u32(200)), 3)
	cfg := config.Config{Name: "t", Metrics: config.Metrics{
		Counters: []config.Counter{{Name: "c_total", Help: "h", Labels: []config.Label{uintLabel("k", 4), uintLabel("pid", 4)}}},
	}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c_total": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	want := "probe_exporter_c_total k=1 pid=100 1\nprobe_exporter_c_total k=1 pid=200 3\nprobe_exporter_c_total k=2 pid=100 2\n"
	if got := scrape(t, c, "probe_exporter_c_total"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	c.DropPID("t", 100)
	if got, want := scrape(t, c, "probe_exporter_c_total"), "probe_exporter_c_total k=1 pid=200 3\n"; got != want {
		t.Fatalf("after DropPID: got\n%s\nwant\n%s", got, want)
	}
	put(t, m, cat(u32(2), u32(100)), 5)
	if got, want := scrape(t, c, "probe_exporter_c_total"), "probe_exporter_c_total k=1 pid=200 3\nprobe_exporter_c_total k=2 pid=100 5\n"; got != want {
		t.Fatalf("key back: got\n%s\nwant\n%s", got, want)
	}
}
