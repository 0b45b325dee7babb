package decoder

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/probe-exporter/probe_exporter/config"
)

// Labels decodes map keys into label values: each label takes its size
// (then skips its padding) and runs its decoder chain. A chain ending in a
// decoder that gives several labels (kubernetes) stands for those labels.
type Labels struct {
	names  []string // every label, the several of a multiDecoder in its place
	fields []string // the configured label of each chain, for errors
	sizes  []uint
	pads   []uint
	chains [][]Decoder
	multi  []multiDecoder // per chain: its last decoder, when it gives several labels
	gens   []generationer
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
		var multi multiDecoder
		for i, dc := range lb.Decoders {
			d, err := New(dc, env)
			if err != nil {
				return nil, fmt.Errorf("label %q: %w", lb.Name, err)
			}
			if g, ok := d.(generationer); ok {
				l.gens = append(l.gens, g)
			}
			if m, ok := d.(multiDecoder); ok {
				names := m.labelNames()
				if i != len(lb.Decoders)-1 {
					return nil, fmt.Errorf("label %q: decoder %q gives the labels %s: it must end the chain", lb.Name, dc.Name, strings.Join(names, ", "))
				}
				if !slices.Contains(names, lb.Name) {
					return nil, fmt.Errorf("label %q: decoder %q gives the labels %s in place of this one: name it one of them", lb.Name, dc.Name, strings.Join(names, ", "))
				}
				multi = m
				continue
			}
			chain = append(chain, d)
		}
		names := []string{lb.Name}
		if multi != nil {
			names = multi.labelNames()
		}
		for _, n := range names {
			if slices.Contains(l.names, n) {
				return nil, fmt.Errorf("label %q: label %q appears twice", lb.Name, n)
			}
		}
		l.names = append(l.names, names...)
		l.fields = append(l.fields, lb.Name)
		l.sizes = append(l.sizes, lb.Size)
		l.pads = append(l.pads, lb.Padding)
		l.chains = append(l.chains, chain)
		l.multi = append(l.multi, multi)
		l.total += lb.Size + lb.Padding
	}
	return l, nil
}

// Generation changes whenever a decoder's output for a key may have
// changed (Kubernetes names learnt), so that cached labels are decoded
// again; it is constant for labels whose decoders are pure.
func (l *Labels) Generation() uint64 {
	var g uint64
	for _, d := range l.gens {
		g += d.generation()
	}
	return g
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
	values := make([]string, len(l.names))
	off := uint(0)
	v := 0
	for i, size := range l.sizes {
		b := key[off : off+size]
		for _, d := range l.chains[i] {
			var err error
			if b, err = d.Decode(b); err != nil {
				if errors.Is(err, ErrSkipLabelSet) {
					return nil, err
				}
				return nil, fmt.Errorf("label %q: %w", l.fields[i], err)
			}
		}
		if m := l.multi[i]; m != nil {
			n := len(m.labelNames())
			if err := m.decodeLabels(b, values[v:v+n]); err != nil {
				if errors.Is(err, ErrSkipLabelSet) {
					return nil, err
				}
				return nil, fmt.Errorf("labels %s: %w", strings.Join(l.names[v:v+n], ", "), err)
			}
			v += n
		} else {
			values[v] = string(b)
			v++
		}
		off += size + l.pads[i]
	}
	return values, nil
}
