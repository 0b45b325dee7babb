package collector

import (
	"fmt"
	"math"

	dto "github.com/prometheus/client_model/go"

	"github.com/probe-exporter/probe_exporter/config"
)

// histSpec maps the bucket keys the kernel writes to Prometheus buckets.
// Buckets are backfilled: every bucket from the configuration is exported,
// whether the kernel wrote its key or not.
type histSpec struct {
	// bounds are the upper bounds (le) of the buckets, ascending.
	bounds []float64
	// slot maps a bucket key to its index in bounds.
	slot map[float64]int
	// sumKey is the key whose value is the sum of observed values.
	sumKey     float64
	multiplier float64
	// leText and leOpenMetrics are the le labels of the buckets as the
	// text formats write them (`le="0.5"}`), +Inf last.
	leText, leOpenMetrics []string
	// native is the native histogram form of the buckets, or nil.
	native *nativeSpec
	// exp2: the bounds are powers of two (exp2, exp2zero).
	exp2 bool
}

func newHistSpec(h config.Histogram) (*histSpec, error) {
	mult := h.Multiplier()
	s := &histSpec{slot: map[float64]int{}, multiplier: mult}
	s.exp2 = h.BucketType == config.BucketExp2 || h.BucketType == config.BucketExp2Zero
	add := func(key, bound float64) {
		s.slot[key] = len(s.bounds)
		s.bounds = append(s.bounds, bound)
	}
	switch h.BucketType {
	case config.BucketExp2, config.BucketExp2Zero, config.BucketLinear:
		if h.BucketMax <= h.BucketMin {
			return nil, fmt.Errorf("bucket_max (%d) must be above bucket_min (%d)", h.BucketMax, h.BucketMin)
		}
		for k := h.BucketMin; k <= h.BucketMax; k++ {
			key := float64(k)
			var bound float64
			switch h.BucketType {
			case config.BucketExp2:
				bound = math.Exp2(key) * mult
			case config.BucketExp2Zero:
				if k == 0 {
					bound = 0
				} else {
					bound = math.Exp2(key-1) * mult
				}
			case config.BucketLinear:
				bound = key * mult
			}
			add(key, bound)
		}
		s.sumKey = float64(h.BucketMax + 1)
	case config.BucketFixed:
		if len(h.BucketKeys) == 0 {
			return nil, fmt.Errorf("fixed buckets need bucket_keys")
		}
		for i, k := range h.BucketKeys {
			if i > 0 && k <= h.BucketKeys[i-1] {
				return nil, fmt.Errorf("bucket_keys must increase: %v after %v", k, h.BucketKeys[i-1])
			}
			add(k, k*mult)
		}
		s.sumKey = h.BucketKeys[len(h.BucketKeys)-1] + 1
	default:
		return nil, fmt.Errorf("unknown bucket_type %q (want exp2, exp2zero, linear or fixed)", h.BucketType)
	}
	s.native = newNativeSpec(h, len(s.bounds))
	bounds := s.bounds
	if !math.IsInf(bounds[len(bounds)-1], +1) {
		bounds = append(bounds[:len(bounds):len(bounds)], math.Inf(+1))
	}
	for _, b := range bounds {
		s.leText = append(s.leText, `le="`+string(appendTextFloat(nil, b))+`"}`)
		s.leOpenMetrics = append(s.leOpenMetrics, `le="`+string(appendOpenMetricsFloat(nil, b))+`"}`)
	}
	return s, nil
}

// toDTO builds the histogram of one label set from its cumulative counts
// and sum.
func (s *histSpec) toDTO(cum []uint64, sum float64) *dto.Histogram {
	n := len(s.bounds)
	buckets := make([]dto.Bucket, n)
	ptrs := make([]*dto.Bucket, n)
	counts := append([]uint64(nil), cum...)
	for i := range s.bounds {
		buckets[i].UpperBound = &s.bounds[i]
		buckets[i].CumulativeCount = &counts[i]
		ptrs[i] = &buckets[i]
	}
	h := &dto.Histogram{SampleCount: &counts[n-1], SampleSum: &sum, Bucket: ptrs}
	if s.native != nil {
		s.native.addDTO(h, counts)
	}
	return h
}
