package web

import (
	"math"
	"strconv"
)

// HistogramStatus is one histogram on the landing page: its buckets at
// the last scrape, summed over its series.
type HistogramStatus struct {
	Name   string
	Series int
	// Bounds are the buckets' upper bounds, ascending; Counts the
	// observations of each bucket alone (not cumulative).
	Bounds []float64
	Counts []uint64
	// Exp2 says the bounds are powers of two (exp2, exp2zero buckets).
	Exp2 bool
}

// Drawing is a histogram drawn as inline SVG: one bar per bucket, the
// buckets side by side (so exp2 buckets lie on a log2 axis), bar heights
// on a log scale of the count, the axis labelled with bucket bounds.
type Drawing struct {
	Width, Height int
	Bars          []Bar
	Ticks         []Tick
	// Max is the largest bucket's count, the top of the count axis.
	Max   uint64
	Total uint64
	// Axis names how the bounds are spaced.
	Axis string
}

// Bar is one bucket's bar; Title is its tooltip.
type Bar struct {
	X, Y, W, H float64
	Title      string
}

// Tick is a bound's label under the bar that ends at it.
type Tick struct {
	X     float64
	Label string
}

// Drawing geometry, in SVG user units (CSS pixels).
const (
	drawWidth   = 360
	drawHeight  = 110
	drawPlot    = 86 // height of the bars' area; the rest holds labels
	drawLeft    = 4
	drawMaxTick = 8 // most bound labels under the axis
)

// Draw lays out the drawing of h.
func (h HistogramStatus) Draw() Drawing {
	d := Drawing{Width: drawWidth, Height: drawHeight, Axis: "linear"}
	if h.Exp2 {
		d.Axis = "log2"
	}
	n := min(len(h.Bounds), len(h.Counts))
	if n == 0 {
		return d
	}
	for _, c := range h.Counts[:n] {
		d.Max = max(d.Max, c)
		d.Total += c
	}
	slot := float64(drawWidth-2*drawLeft) / float64(n)
	scale := math.Log2(1 + float64(d.Max))
	every := (n + drawMaxTick - 1) / drawMaxTick
	for i := 0; i < n; i++ {
		x := drawLeft + float64(i)*slot
		c := h.Counts[i]
		height := 0.0
		if c > 0 && scale > 0 {
			// At least a pixel, so that a bucket with few observations
			// next to a full one still shows.
			height = max(1, drawPlot*math.Log2(1+float64(c))/scale)
		}
		lower := "-Inf"
		if i > 0 {
			lower = formatBound(h.Bounds[i-1])
		}
		d.Bars = append(d.Bars, Bar{
			X: round1(x + 0.5), Y: round1(drawPlot - height), W: round1(max(slot-1, 0.5)), H: round1(height),
			Title: "(" + lower + ", " + formatBound(h.Bounds[i]) + "]: " + strconv.FormatUint(c, 10),
		})
		// Every few bounds, and the last unless it would overlap.
		if i%every == 0 || i == n-1 && i%every > every/2 {
			d.Ticks = append(d.Ticks, Tick{X: round1(x + slot/2), Label: formatBound(h.Bounds[i])})
		}
	}
	return d
}

// formatBound writes a bound short: powers of two of large or small
// magnitude as 2^k, others in the shortest decimal form.
func formatBound(b float64) string {
	if b != 0 && !math.IsInf(b, 0) {
		if frac, exp := math.Frexp(b); frac == 0.5 && (exp-1 > 16 || exp-1 < -6) {
			return "2^" + strconv.Itoa(exp-1)
		}
	}
	return strconv.FormatFloat(b, 'g', 4, 64)
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
