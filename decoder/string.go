package decoder

import (
	"bytes"

	"github.com/probe-exporter/probe_exporter/config"
)

// stringDecoder cuts a possibly NUL-terminated C string at its first NUL.
type stringDecoder struct{}

func newString(config.Decoder, *Env) (Decoder, error) { return stringDecoder{}, nil }

func (stringDecoder) Decode(in []byte) ([]byte, error) {
	if i := bytes.IndexByte(in, 0); i >= 0 {
		return in[:i], nil
	}
	return in, nil
}
