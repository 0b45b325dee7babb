package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestKstack(t *testing.T) {
	env := &Env{Kallsyms: symbols(t)}
	stack := append(append(append(le64(0xffffffff81000210), le64(0xffffffff81000105)...), le64(0x10)...), le64(0)...)
	runDecodeCases(t, config.Decoder{Name: "kstack"}, env, []decodeCase{
		{name: "frames", in: stack, want: "do_two\ndo_one\n??"},
		{name: "empty", in: le64(0), want: ""},
		{name: "ragged", in: []byte{1, 2, 3}, wantErr: "8-byte"},
	})
}
