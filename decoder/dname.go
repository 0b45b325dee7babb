package decoder

import (
	"github.com/probe-exporter/probe_exporter/config"
)

// dname turns a DNS name in wire format (\x07example\x03com\x00) into dotted
// form (example.com). Malformed input is returned as is.
type dname struct{}

func newDname(config.Decoder, *Env) (Decoder, error) { return dname{}, nil }

func (dname) Decode(in []byte) ([]byte, error) {
	if len(in) == 0 {
		return []byte("."), nil
	}
	out := make([]byte, 0, len(in))
	for off := 0; off < len(in); {
		n := int(in[off])
		off++
		if n == 0 {
			break
		}
		if off+n > len(in) {
			return in, nil
		}
		if len(out) > 0 {
			out = append(out, '.')
		}
		out = append(out, in[off:off+n]...)
		off += n
	}
	if len(out) == 0 {
		return []byte("."), nil
	}
	return out, nil
}
