package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/config"
)

// fakeExits is a log of exits, as procexit keeps it.
type fakeExits struct {
	pids     []uint32
	complete bool
	syncs    int
}

func (f *fakeExits) Sync() { f.syncs++ }

func (f *fakeExits) Since(seq uint64, fn func(uint32)) (uint64, bool) {
	for ; seq < uint64(len(f.pids)); seq++ {
		fn(f.pids[seq])
	}
	return uint64(len(f.pids)), f.complete
}

func pidLabel(name string) config.Label {
	return config.Label{Name: name, Size: 4, Decoders: []config.Decoder{{Name: "pid"}}}
}

func expireFixture(t *testing.T, opts Options, labels []config.Label, maxAge time.Duration) (*Collector, *ebpf.Map) {
	t.Helper()
	m := newMap(t, ebpf.Hash, 8, 64)
	cfg := config.Config{Name: "t", Path: "t.yaml", Metrics: config.Metrics{Counters: []config.Counter{{
		Name: "calls_total", Help: "h", Line: 3, Labels: labels, MaxAge: config.Duration(maxAge),
	}}}}
	c := New(opts)
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"calls_total": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	return c, m
}

func TestExpireProcessExit(t *testing.T) {
	exits := &fakeExits{pids: []uint32{1}, complete: true} // before the config: ignored
	c, m := expireFixture(t, Options{Exits: exits}, []config.Label{pidLabel("pid"), uintLabel("op", 4)}, 0)
	put(t, m, cat(u32(100), u32(1)), 5)
	put(t, m, cat(u32(100), u32(2)), 6)
	put(t, m, cat(u32(200), u32(1)), 7)
	put(t, m, cat(u32(1), u32(1)), 8)
	all := "probe_exporter_calls_total op=1 pid=1 8\nprobe_exporter_calls_total op=1 pid=100 5\nprobe_exporter_calls_total op=1 pid=200 7\nprobe_exporter_calls_total op=2 pid=100 6\n"
	if got := scrape(t, c, "probe_exporter_calls_total"); got != all {
		t.Fatalf("got\n%s\nwant\n%s", got, all)
	}
	// 100 exits: the next scrape still shows its last values, then they
	// are gone from the map.
	exits.pids = append(exits.pids, 100, 300)
	put(t, m, cat(u32(100), u32(1)), 9)
	want := strings.Replace(all, "op=1 pid=100 5", "op=1 pid=100 9", 1)
	if got := scrape(t, c, "probe_exporter_calls_total"); got != want {
		t.Fatalf("scrape after exit:\n%s\nwant\n%s", got, want)
	}
	want = "probe_exporter_calls_total op=1 pid=1 8\nprobe_exporter_calls_total op=1 pid=200 7\n"
	if got := scrape(t, c, "probe_exporter_calls_total"); got != want {
		t.Fatalf("second scrape after exit:\n%s\nwant\n%s", got, want)
	}
	var v uint64
	if err := m.Lookup(cat(u32(100), u32(1)), &v); err == nil {
		t.Errorf("key of pid 100 still in the map: %d", v)
	}
	if got, want := scrape(t, c, "probe_exporter_map_entries_expired_total"), "probe_exporter_map_entries_expired_total config=t map=calls_total reason=process_exit 2\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A new process with the pid is counted afresh.
	put(t, m, cat(u32(100), u32(1)), 1)
	if got := scrape(t, c, "probe_exporter_calls_total"); !strings.Contains(got, "op=1 pid=100 1\n") {
		t.Fatalf("pid back:\n%s", got)
	}
}

// TestExpireFallback: without complete exit events, pids read are looked
// up in /proc after the scrape; the keys of those gone go after the next.
func TestExpireFallback(t *testing.T) {
	proc := t.TempDir()
	if err := os.Mkdir(filepath.Join(proc, "200"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, exits := range []ProcessExits{nil, &fakeExits{complete: false}} {
		c, m := expireFixture(t, Options{Exits: exits, ProcRoot: proc}, []config.Label{uintLabel("op", 4), pidLabel("pid")}, 0)
		put(t, m, cat(u32(1), u32(100)), 5)
		put(t, m, cat(u32(1), u32(200)), 7)
		put(t, m, cat(u32(1), u32(0)), 3) // pid 0 (the idle task) never goes
		all := "probe_exporter_calls_total op=1 pid=0 3\nprobe_exporter_calls_total op=1 pid=100 5\nprobe_exporter_calls_total op=1 pid=200 7\n"
		for i := 0; i < 2; i++ {
			if got := scrape(t, c, "probe_exporter_calls_total"); got != all {
				t.Fatalf("scrape %d:\n%s\nwant\n%s", i, got, all)
			}
		}
		want := "probe_exporter_calls_total op=1 pid=0 3\nprobe_exporter_calls_total op=1 pid=200 7\n"
		if got := scrape(t, c, "probe_exporter_calls_total"); got != want {
			t.Fatalf("after:\n%s\nwant\n%s", got, want)
		}
	}
}

func TestExpireNever(t *testing.T) {
	exits := &fakeExits{complete: true}
	never := pidLabel("pid")
	never.Expire = config.ExpireNever
	c, m := expireFixture(t, Options{Exits: exits}, []config.Label{never, uintLabel("op", 4)}, 0)
	put(t, m, cat(u32(100), u32(1)), 5)
	scrape(t, c)
	exits.pids = append(exits.pids, 100)
	scrape(t, c)
	if got := scrape(t, c, "probe_exporter_calls_total"); got != "probe_exporter_calls_total op=1 pid=100 5\n" {
		t.Fatalf("expire: never deleted the key:\n%s", got)
	}
}

// Configs selecting processes leave their "pid" label to DropPID; another
// label marked expire: process_exit expires here.
func TestExpireUserspaceConfig(t *testing.T) {
	tgid := uintLabel("tgid", 4)
	tgid.Expire = config.ExpireProcessExit
	for _, tc := range []struct {
		label  config.Label
		expire bool
	}{{pidLabel("pid"), false}, {tgid, true}} {
		m := newMap(t, ebpf.Hash, 4, 8)
		cfg := config.Config{Name: "u", Attachments: &config.Selector{Comm: "x"}, Metrics: config.Metrics{Counters: []config.Counter{{
			Name: "c", Help: "h", Labels: []config.Label{tc.label},
		}}}}
		cc := New(Options{Exits: &fakeExits{complete: true}}).NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c": m}))
		if cc.Err != nil {
			t.Fatal(cc.Err)
		}
		if got := cc.metrics[0].expiry != nil; got != tc.expire {
			t.Errorf("label %q: expiry %v, want %v", tc.label.Name, got, tc.expire)
		}
	}
}

func TestExpireArray(t *testing.T) {
	m := newMap(t, ebpf.Array, 4, 4)
	l := uintLabel("pid", 4)
	l.Expire = config.ExpireProcessExit
	cfg := config.Config{Name: "t", Path: "t.yaml", Metrics: config.Metrics{Counters: []config.Counter{{Name: "a", Help: "h", Line: 4, Labels: []config.Label{l}}}}}
	cc := New(Options{}).NewConfig(objectWith(cfg, map[string]*ebpf.Map{"a": m}))
	want := `t.yaml:4: metric "a": map "a" is an array, whose entries cannot be deleted: expire and max_age need a hash map`
	if cc.Err == nil || cc.Err.Error() != want {
		t.Fatalf("error %v, want %q", cc.Err, want)
	}
}

func TestExpireMaxAge(t *testing.T) {
	const age = 50 * time.Millisecond
	c, m := expireFixture(t, Options{}, []config.Label{uintLabel("a", 4), uintLabel("b", 4)}, age)
	put(t, m, cat(u32(1), u32(1)), 5) // idle
	put(t, m, cat(u32(2), u32(2)), 6) // changing
	want := "probe_exporter_calls_total a=1 b=1 5\nprobe_exporter_calls_total a=2 b=2 6\n"
	if got := scrape(t, c, "probe_exporter_calls_total"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	time.Sleep(2 * age)
	put(t, m, cat(u32(2), u32(2)), 7)
	// Unchanged for max_age: served once more, then deleted.
	want = "probe_exporter_calls_total a=1 b=1 5\nprobe_exporter_calls_total a=2 b=2 7\n"
	if got := scrape(t, c, "probe_exporter_calls_total"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	want = "probe_exporter_calls_total a=2 b=2 7\n"
	if got := scrape(t, c, "probe_exporter_calls_total"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got, want := scrape(t, c, "probe_exporter_map_entries_expired_total"), "probe_exporter_map_entries_expired_total config=t map=calls_total reason=max_age 1\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
