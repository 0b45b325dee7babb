package decoder

import (
	"errors"

	"github.com/probe-exporter/probe_exporter/config"
)

// staticMap maps values to names; unknown values become "unknown:X", or
// stay X with allow_unknown.
type staticMap struct {
	m            map[string]string
	allowUnknown bool
}

func newStaticMap(conf config.Decoder, _ *Env) (Decoder, error) {
	if len(conf.StaticMap) == 0 {
		return nil, errors.New("static_map is empty")
	}
	return &staticMap{m: conf.StaticMap, allowUnknown: conf.AllowUnknown}, nil
}

func (s *staticMap) Decode(in []byte) ([]byte, error) {
	if v, ok := s.m[string(in)]; ok {
		return []byte(v), nil
	}
	if s.allowUnknown {
		return in, nil
	}
	return append([]byte("unknown:"), in...), nil
}
