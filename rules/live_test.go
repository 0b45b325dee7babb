package rules

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func mustParse(t *testing.T, src string) *Set {
	t.Helper()
	s, err := Parse("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLiveReplace: what Replace keeps and drops, by the rule's change.
func TestLiveReplace(t *testing.T) {
	const before = "metrics-export-rules:\n  keep_total:\n    expr: app.cpu\n  change_total:\n    expr: app.cpu\n  gone_total:\n    expr: app.cpu\n"
	const after = "metrics-export-rules:\n  keep_total:\n    expr: app.cpu\n  change_total:\n    expr: other.cpu\n  new_total:\n    expr: app.cpu\n"
	l := NewLive(mustParse(t, before))
	cpu := func() {
		l.ObserveProfile(Sampled("app.cpu", nil, "samples", 100, []Sample{{Stack: "main", Value: 100}}))
	}
	cpu()
	l.Replace(mustParse(t, after))
	cpu()
	want := `
# HELP keep_total Profile export rule keep_total: expr app.cpu, node total.
# TYPE keep_total counter
keep_total 2
# HELP new_total Profile export rule new_total: expr app.cpu, node total.
# TYPE new_total counter
new_total 1
`
	for _, name := range []string{"keep_total", "change_total", "gone_total", "new_total"} {
		if !strings.Contains(want, name) {
			if n := testutil.CollectAndCount(l, name); n != 0 {
				t.Errorf("%s: %d series after Replace, want none", name, n)
			}
		}
	}
	if err := testutil.CollectAndCompare(l, strings.NewReader(want), "keep_total", "new_total"); err != nil {
		t.Error(err)
	}
	if got := len(l.Rules()); got != 3 {
		t.Errorf("%d rules, want 3", got)
	}
}

// TestLiveReplaceLosesNothing: profiles counted while sets are swapped
// are each counted once.
func TestLiveReplaceLosesNothing(t *testing.T) {
	const src = "metrics-export-rules:\n  total:\n    expr: app.cpu\n"
	l := NewLive(mustParse(t, src))
	const writers, each = 4, 5000
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				l.ObserveProfile(Profile{App: "app.cpu", Units: "objects", Divisor: 1, Samples: []Sample{{Stack: "a", Value: 1}}})
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	replaces := 0
	for running := true; running; replaces++ {
		select {
		case <-done:
			running = false
		default:
		}
		l.Replace(mustParse(t, src))
	}
	want := "# HELP total Profile export rule total: expr app.cpu, node total.\n# TYPE total counter\ntotal " + strconv.Itoa(writers*each) + "\n"
	if err := testutil.CollectAndCompare(l, strings.NewReader(want), "total"); err != nil {
		t.Errorf("after %d replaces: %v", replaces, err)
	}
}
