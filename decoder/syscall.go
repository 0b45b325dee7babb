package decoder

import (
	"strconv"

	"github.com/probe-exporter/probe_exporter/config"
)

// syscallDecoder turns a syscall number (decimal, after uint) into its name
// on this architecture, or "unknown_syscall:N".
type syscallDecoder struct{}

func newSyscall(config.Decoder, *Env) (Decoder, error) { return syscallDecoder{}, nil }

func (syscallDecoder) Decode(in []byte) ([]byte, error) {
	n, err := decimal(in)
	if err != nil {
		return nil, err
	}
	if name, ok := syscallNames[n]; ok {
		return []byte(name), nil
	}
	return strconv.AppendUint([]byte("unknown_syscall:"), n, 10), nil
}
