package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestHex(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "hex"}, nil, []decodeCase{
		{name: "bytes", in: []byte{0xde, 0xad, 0xbe, 0xef}, want: "deadbeef"},
		{name: "empty", in: nil, want: ""},
	})
}
