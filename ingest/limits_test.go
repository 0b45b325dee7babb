package ingest

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// TestPprofEstimateCoversParse: for profiles of every shape, what
// countPprof charges covers what github.com/google/pprof's decoder keeps
// live (measured on the heap) and the garbage it makes growing slices
// (all it allocates is under twice the charge).
func TestPprofEstimateCoversParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty samples", testkit.EmptySamplesPprof(200_000)},
		{"tiny locations", testkit.TinyItemsPprof(4, 200_000)},
		{"tiny functions", testkit.TinyItemsPprof(5, 200_000)},
		{"empty strings", testkit.TinyItemsPprof(6, 500_000)},
		{"big strings", testkit.HugeStringsPprof(20, 100_000)},
		{"deep stacks", testkit.DeepStacksPprof(200, 1000)},
		{"labels", testkit.LabelsPprof(20_000, 16)},
		{"cpu profile", gunzipped(t, cpuProfile(t))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := countPprof(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			prof, err := profile.ParseUncompressed(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			runtime.KeepAlive(prof)
			live, alloc := int64(m1.HeapAlloc)-int64(m0.HeapAlloc), int64(m1.TotalAlloc-m0.TotalAlloc)
			t.Logf("charged %d, live %d (%.2f), allocated %d (%.2f)", c.memory(), live, float64(live)/float64(c.memory()), alloc, float64(alloc)/float64(c.memory()))
			if live > c.memory() {
				t.Errorf("the decoder keeps %d bytes, %d charged", live, c.memory())
			}
			if alloc > 2*c.memory() {
				t.Errorf("the decoder allocates %d bytes, %d charged", alloc, c.memory())
			}
		})
	}
}

func gunzipped(t testing.TB, b []byte) []byte {
	p, err := profile.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.WriteUncompressed(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBombs: each bomb, with the default bounds, is refused with 413 and
// the bound it passed named, or accepted; the handler's charges are all
// given back.
func TestBombs(t *testing.T) {
	want := map[string]struct {
		code   int
		reason string
	}{
		"10M empty samples":                  {413, "more than 500000 samples"},
		"5M tiny locations":                  {413, "more than 500000 locations"},
		"5M tiny functions":                  {413, "more than 500000 functions"},
		"20M empty strings":                  {413, "more than 1048576 strings"},
		"a string of 60 MiB":                 {413, "a string of more than 1048576 bytes"},
		"8 strings of 1 MiB in one stack":    {413, "a stack of more than 1048576 bytes"},
		"300 distinct stacks of 4096 frames": {200, ""},
		"8200 samples of 128 labels":         {413, "more than 1048576 sample labels"},
		"folded, 1M distinct stacks":         {413, "more than 500000 distinct stacks"},
		"folded, a stack of 100k frames":     {413, "a stack of more than 4096 frames"},
	}
	srv := newServer(t, "metrics-export-rules:\n  bomb_total:\n    expr: ''\n", Options{})
	for _, b := range testkit.IngestBombs() {
		t.Run(b.Name, func(t *testing.T) {
			w, ok := want[b.Name]
			if !ok {
				t.Fatalf("no expectation for %q", b.Name)
			}
			hdr := map[string]string{}
			if b.Gzip {
				hdr["Content-Encoding"] = "gzip"
			}
			code, _, msg := srv.push(t, b.Query, hdr, bytes.NewReader(b.Body))
			if code != w.code || !strings.Contains(msg, w.reason) {
				t.Errorf("%d %q, want %d %q", code, msg, w.code, w.reason)
			}
			if n := srv.h.inflight.Load(); n != 0 {
				t.Errorf("%d bytes still charged", n)
			}
		})
	}
}
