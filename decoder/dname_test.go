package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestDname(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "dname"}, nil, []decodeCase{
		{name: "example.com", in: []byte("\x07example\x03com\x00"), want: "example.com"},
		{name: "no terminator", in: []byte("\x03www\x07example\x03org"), want: "www.example.org"},
		{name: "root", in: []byte{0}, want: "."},
		{name: "empty", in: nil, want: "."},
		{name: "truncated", in: []byte("\x09abc"), want: "\x09abc"},
	})
}
