package decoder

import (
	"errors"
	"fmt"

	"github.com/probe-exporter/probe_exporter/config"
)

// Labels decodes map keys into label values: each label takes its size
// (then skips its padding) and runs its decoder chain.
type Labels struct {
	names  []string
	sizes  []uint
	pads   []uint
	chains [][]Decoder
	total  uint
}

// NewLabels compiles the decoders of labels; errors name the label.
func NewLabels(labels []config.Label, env *Env) (*Labels, error) {
	l := &Labels{}
	for _, lb := range labels {
		if lb.Size == 0 {
			return nil, fmt.Errorf("label %q: size is zero or not set", lb.Name)
		}
		if len(lb.Decoders) == 0 {
			return nil, fmt.Errorf("label %q: no decoders (use uint, string, ...)", lb.Name)
		}
		var chain []Decoder
		for _, dc := range lb.Decoders {
			d, err := New(dc, env)
			if err != nil {
				return nil, fmt.Errorf("label %q: %w", lb.Name, err)
			}
			chain = append(chain, d)
		}
		l.names = append(l.names, lb.Name)
		l.sizes = append(l.sizes, lb.Size)
		l.pads = append(l.pads, lb.Padding)
		l.chains = append(l.chains, chain)
		l.total += lb.Size + lb.Padding
	}
	return l, nil
}

// Names are the label names in key order.
func (l *Labels) Names() []string { return l.names }

// KeySize is the key size the labels describe (sizes plus paddings).
func (l *Labels) KeySize() uint { return l.total }

// Decode splits key into label values. It returns ErrSkipLabelSet when a
// decoder drops the label set. Decoders keep their own caches behind
// locks, so Decode is safe for concurrent use.
func (l *Labels) Decode(key []byte) ([]string, error) {
	if uint(len(key)) != l.total {
		return nil, fmt.Errorf("key is %d bytes but labels take %d", len(key), l.total)
	}
	values := make([]string, len(l.sizes))
	off := uint(0)
	for i, size := range l.sizes {
		b := key[off : off+size]
		for _, d := range l.chains[i] {
			var err error
			if b, err = d.Decode(b); err != nil {
				if errors.Is(err, ErrSkipLabelSet) {
					return nil, err
				}
				return nil, fmt.Errorf("label %q: %w", l.names[i], err)
			}
		}
		values[i] = string(b)
		off += size + l.pads[i]
	}
	return values, nil
}
