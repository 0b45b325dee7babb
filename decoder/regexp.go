package decoder

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/probe-exporter/probe_exporter/config"
)

// regexpDecoder passes its input through when any pattern matches it and
// drops the whole label set otherwise.
type regexpDecoder struct {
	res []*regexp.Regexp
}

func newRegexp(conf config.Decoder, _ *Env) (Decoder, error) {
	patterns := conf.Patterns()
	if len(patterns) == 0 {
		return nil, errors.New("no regexps given")
	}
	d := &regexpDecoder{}
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("regexp %q: %w", p, err)
		}
		d.res = append(d.res, re)
	}
	return d, nil
}

func (d *regexpDecoder) Decode(in []byte) ([]byte, error) {
	for _, re := range d.res {
		if re.Match(in) {
			return in, nil
		}
	}
	return nil, ErrSkipLabelSet
}
