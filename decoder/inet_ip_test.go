package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestInetIP(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "inet_ip"}, nil, []decodeCase{
		{name: "v4", in: []byte{127, 0, 0, 1}, want: "127.0.0.1"},
		{name: "v6", in: []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}, want: "2001:db8::1"},
		{name: "v4 mapped", in: []byte{10: 0xff, 11: 0xff, 12: 10, 13: 0, 14: 0, 15: 1}, want: "10.0.0.1"},
		{name: "bad size", in: []byte{1, 2}, wantErr: "4 or 16 bytes"},
	})
}
