package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestErrno(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "errno"}, nil, []decodeCase{
		{name: "ENOENT", in: []byte("2"), want: "ENOENT"},
		{name: "EAGAIN", in: []byte("11"), want: "EAGAIN"},
		{name: "unknown", in: []byte("4095"), want: "unknown:4095"},
		{name: "not a number", in: []byte{2, 0, 0, 0}, wantErr: "not a decimal number"},
	})
}
