package decoder

import (
	"encoding/hex"

	"github.com/probe-exporter/probe_exporter/config"
)

// hexDecoder writes the bytes as lowercase hex.
type hexDecoder struct{}

func newHex(config.Decoder, *Env) (Decoder, error) { return hexDecoder{}, nil }

func (hexDecoder) Decode(in []byte) ([]byte, error) {
	return hex.AppendEncode(nil, in), nil
}
