package decoder

import (
	"strconv"

	"github.com/probe-exporter/probe_exporter/config"
)

// syscallDecoder turns a syscall number (decimal, after uint) into its name
// on this architecture, or "unknown_syscall:N". Names are the kernel's
// ("futex", "exit_group", "pread64"); in ebpf_exporter mode they are
// ebpf_exporter's where its table differs ("futex_time64", "exit", "pread").
type syscallDecoder struct{ overrides map[uint64]string }

func newSyscall(_ config.Decoder, env *Env) (Decoder, error) {
	if env != nil && env.EbpfExporter {
		return syscallDecoder{overrides: ebpfExporterSyscallNames}, nil
	}
	return syscallDecoder{}, nil
}

func (d syscallDecoder) Decode(in []byte) ([]byte, error) {
	n, err := decimal(in)
	if err != nil {
		return nil, err
	}
	if name, ok := d.overrides[n]; ok {
		return []byte(name), nil
	}
	if name, ok := syscallNames[n]; ok {
		return []byte(name), nil
	}
	return strconv.AppendUint([]byte("unknown_syscall:"), n, 10), nil
}
