package web

import (
	"github.com/probe-exporter/probe_exporter/internal/testkit"

	"strings"
	"testing"
)

func TestFormatBound(t *testing.T) {
	for _, tc := range []struct {
		b    float64
		want string
	}{
		{0, "0"}, {1, "1"}, {1024, "1024"}, {65536, "6.554e+04"}, {1 << 20, "2^20"},
		{0.5, "0.5"}, {1.0 / 128, "2^-7"}, {1e-6, "1e-06"}, {0.001, "0.001"}, {3, "3"},
	} {
		if got := formatBound(tc.b); got != tc.want {
			t.Errorf("formatBound(%v) = %q, want %q", tc.b, got, tc.want)
		}
	}
}

func TestDraw(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    HistogramStatus
		bars int
		max  uint64
	}{
		{"empty", HistogramStatus{}, 0, 0},
		{"zero counts", HistogramStatus{Bounds: []float64{1, 2}, Counts: []uint64{0, 0}, Exp2: true}, 2, 0},
		{"exp2", HistogramStatus{Bounds: []float64{1, 2, 4, 8}, Counts: []uint64{1, 1000, 0, 3}, Exp2: true}, 4, 1000},
		{"counts shorter than bounds", HistogramStatus{Bounds: []float64{1, 2, 4}, Counts: []uint64{5}}, 1, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.h.Draw()
			if len(d.Bars) != tc.bars || d.Max != tc.max {
				t.Fatalf("%d bars, max %d; want %d, %d", len(d.Bars), d.Max, tc.bars, tc.max)
			}
			for i, b := range d.Bars {
				if b.H < 0 || b.H > drawPlot || b.Y < 0 || b.X < 0 || b.X+b.W > float64(d.Width) {
					t.Errorf("bar %d out of the drawing: %+v", i, b)
				}
				if c := tc.h.Counts[i]; (c == 0) != (b.H == 0) {
					t.Errorf("bar %d: count %d drawn %v high", i, c, b.H)
				}
				if i > 0 && b.X <= d.Bars[i-1].X {
					t.Errorf("bars not in order of bounds")
				}
			}
			if len(d.Bars) > 0 && (len(d.Ticks) == 0 || len(d.Ticks) > drawMaxTick+1) {
				t.Errorf("%d ticks", len(d.Ticks))
			}
		})
	}
	// Log scale: a bucket a thousand times smaller is still visible,
	// and the full one reaches the top.
	d := HistogramStatus{Bounds: []float64{1, 2}, Counts: []uint64{1, 1000}, Exp2: true}.Draw()
	if d.Bars[1].H != drawPlot || d.Bars[0].H < 5 {
		t.Errorf("log scale: heights %v and %v", d.Bars[0].H, d.Bars[1].H)
	}
	if d.Axis != "log2" || d.Ticks[0].Label != "1" || d.Bars[1].Title != "(1, 2]: 1000" {
		t.Errorf("labels: %+v %+v", d.Ticks, d.Bars[1])
	}
}

// TestLandingPageDrawsAndEscapes: series counts, scrape figures and a
// histogram's drawing are on the page, and every text a config or a
// program brings is escaped, in HTML and in the SVG alike.
func TestLandingPageDrawsAndEscapes(t *testing.T) {
	evil := `<script>alert(1)</script>"'&`
	srv := testServer(t, Options{Status: func() Status {
		return Status{Configs: []ConfigStatus{{
			Name: evil, Source: evil, Up: true, Scraped: true, Series: 12345, ScrapeBytes: 3 << 20, DecoderErrors: 2,
			Programs:   []ProgramStatus{{Name: evil, Section: evil, Attach: evil, Error: evil}},
			Histograms: []HistogramStatus{{Name: evil, Series: 7, Bounds: []float64{1, 2, 4}, Counts: []uint64{1, 2, 3}, Exp2: true}},
		}}, Scripts: []ScriptStatus{{Name: "a.sh", LastError: evil, LastOutputSize: 2048}}, Rules: []RuleStatus{{Text: evil, Series: 3, Dropped: 4}}}
	}})
	code, hdr, page := testkit.Get(t, srv.URL+"/")
	if code != 200 {
		t.Fatalf("landing page: %d", code)
	}
	if strings.Contains(page, "<script") || strings.Contains(page, `"'&`) {
		t.Errorf("unescaped text on the page:\n%s", page)
	}
	for _, want := range []string{
		`<td class="n">12345</td>`, "3.0 MiB", `<td class="n">2</td>`, "<svg ", `<rect x=`, "(2, 4]: 3</title>",
		"7 series, 6 observations", "2.0 KiB", `<td class="n">3</td><td class="n">4</td>`, "&lt;script&gt;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("landing page lacks %q:\n%s", want, page)
		}
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}
