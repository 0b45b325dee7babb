package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestString(t *testing.T) {
	runDecodeCases(t, config.Decoder{Name: "string"}, nil, []decodeCase{
		{name: "nul terminated", in: []byte("bash\x00\x00junk"), want: "bash"},
		{name: "full", in: []byte("systemd-journal"), want: "systemd-journal"},
		{name: "empty", in: []byte{0, 0}, want: ""},
	})
}
