package decoder

import (
	"bytes"
	"os"
	"path/filepath"

	"github.com/probe-exporter/probe_exporter/config"
)

// comm turns a process id (decimal, after uint or pid) into the process's
// command name from /proc/PID/comm; a process that is gone keeps its pid.
type comm struct{ proc string }

func newComm(_ config.Decoder, env *Env) (Decoder, error) {
	proc := "/proc"
	if env != nil && env.ProcRoot != "" {
		proc = env.ProcRoot
	}
	return comm{proc: proc}, nil
}

func (d comm) Decode(in []byte) ([]byte, error) {
	if _, err := decimal(in); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(d.proc, string(in), "comm"))
	if err != nil {
		return in, nil
	}
	return bytes.TrimRight(data, "\n"), nil
}
