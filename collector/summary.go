package collector

import (
	"io"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Summary is what the landing page shows of a config's maps, as of the
// last scrape: summarizing reads the caches the scrape left, never the
// kernel maps, so a look at the page neither costs a scrape nor takes
// entries from maps whose keys expire once served.
type Summary struct {
	// Scraped is false until the config's maps are first scraped.
	Scraped bool
	// Series is the number of series the last scrape served (a
	// histogram's label set counts once).
	Series int
	// ScrapeDuration is how long the last scrape of the maps took.
	ScrapeDuration time.Duration
	// ScrapeBytes is the size of the config's families in the last
	// /metrics answer, before compression (0 until one is written).
	ScrapeBytes int64
	// DecoderErrors counts the keys whose labels did not decode.
	DecoderErrors float64
	Histograms    []HistogramSummary
}

// HistogramSummary is a histogram's buckets at the last scrape, summed
// over its series.
type HistogramSummary struct {
	Name   string
	Series int
	// Bounds are the buckets' upper bounds, ascending; Counts the
	// observations of each bucket alone (not cumulative).
	Bounds []float64
	Counts []uint64
	// Exp2 is set for exp2 and exp2zero buckets, drawn on a log axis.
	Exp2 bool
}

// Summary summarizes the config's maps as the last scrape left them. It
// takes the config's scrape lock, so it waits for a scrape under way; its
// cost is one pass over the series of the last scrape.
func (cfg *Config) Summary() Summary {
	var s Summary
	if cfg.decodeErrs != nil {
		var m dto.Metric
		if cfg.decodeErrs.Write(&m) == nil {
			s.DecoderErrors = m.GetCounter().GetValue()
		}
	}
	s.ScrapeBytes = cfg.lastBytes.Load()
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	s.ScrapeDuration = cfg.lastDuration
	for _, mm := range cfg.metrics {
		if mm.gen == 0 {
			continue
		}
		s.Scraped = true
		n := 0
		for _, g := range mm.sgen {
			if g == mm.gen {
				n++
			}
		}
		s.Series += n * max(1, len(mm.fields))
		if mm.hist == nil {
			continue
		}
		nb := len(mm.hist.bounds)
		h := HistogramSummary{
			Name: mm.name, Series: n, Bounds: slices.Clone(mm.hist.bounds), Counts: make([]uint64, nb),
			Exp2: mm.hist.exp2,
		}
		for id, g := range mm.sgen {
			if g != mm.gen {
				continue
			}
			for b, v := range mm.counts[id*nb : (id+1)*nb] {
				h.Counts[b] += v
			}
		}
		s.Histograms = append(s.Histograms, h)
	}
	slices.SortFunc(s.Histograms, func(a, b HistogramSummary) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
	// err is the first write error: the client is gone or too slow.
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// scrapeSizes accounts the bytes of one /metrics answer to the configs
// whose families they are.
type scrapeSizes map[*Config]int64

// add accounts n bytes written for a group of frames, shared among their
// configs by series.
func (s scrapeSizes) add(group []*frame, n int64) {
	total := 0
	for _, f := range group {
		total += len(f.ids)
	}
	for _, f := range group {
		if f.mm.owner == nil || total == 0 {
			continue
		}
		s[f.mm.owner] += n * int64(len(f.ids)) / int64(total)
	}
}

// store records the sizes as the configs' last ones.
func (s scrapeSizes) store() {
	for cfg, n := range s {
		cfg.lastBytes.Store(n)
	}
}
