package decoder

import (
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
)

// errno turns an errno number (decimal, after uint) into its name, such as
// ENOENT; unknown numbers become "unknown:N".
type errno struct{}

func newErrno(config.Decoder, *Env) (Decoder, error) { return errno{}, nil }

func (errno) Decode(in []byte) ([]byte, error) {
	n, err := decimal(in)
	if err != nil {
		return nil, err
	}
	if name := unix.ErrnoName(syscall.Errno(n)); name != "" {
		return []byte(name), nil
	}
	return strconv.AppendUint([]byte("unknown:"), n, 10), nil
}
