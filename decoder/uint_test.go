package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestUint(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "uint"}, nil, []decodeCase{
		{name: "u8", in: []byte{7}, want: "7"},
		{name: "u16", in: le16(65535), want: "65535"},
		{name: "u32", in: le32(0xe), want: "14"},
		{name: "u64", in: le64(1 << 40), want: "1099511627776"},
		{name: "3 bytes", in: []byte{1, 2, 3}, wantErr: "1, 2, 4 or 8 bytes"},
	})
}

func TestPid(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "pid"}, nil, []decodeCase{
		{name: "u32", in: le32(4242), want: "4242"},
		{name: "u64", in: le64(1), want: "1"},
	})
}
