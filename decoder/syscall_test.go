package decoder

import (
	"runtime"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestSyscall(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("table values below are x86_64's")
	}
	for _, tc := range []struct {
		mode  string
		env   *Env
		cases []decodeCase
	}{
		{mode: "kernel names", env: nil, cases: []decodeCase{
			{name: "read", in: []byte("0"), want: "read"},
			{name: "getppid", in: []byte("110"), want: "getppid"},
			{name: "futex", in: []byte("202"), want: "futex"},
			{name: "exit_group", in: []byte("231"), want: "exit_group"},
			{name: "pread64", in: []byte("17"), want: "pread64"},
			{name: "cachestat", in: []byte("451"), want: "cachestat"},
			{name: "futex_wake", in: []byte("454"), want: "futex_wake"},
			{name: "lsm_list_modules", in: []byte("461"), want: "lsm_list_modules"},
			{name: "mseal", in: []byte("462"), want: "mseal"},
			{name: "file_setattr", in: []byte("469"), want: "file_setattr"},
			{name: "uretprobe", in: []byte("335"), want: "uretprobe"},
			{name: "unknown", in: []byte("9999"), want: "unknown_syscall:9999"},
		}},
		{mode: "ebpf_exporter names", env: &Env{EbpfExporter: true}, cases: []decodeCase{
			{name: "read", in: []byte("0"), want: "read"},
			{name: "futex", in: []byte("202"), want: "futex_time64"},
			{name: "exit_group", in: []byte("231"), want: "exit"},
			{name: "pread64", in: []byte("17"), want: "pread"},
			{name: "poll", in: []byte("7"), want: "poll_time64"},
			{name: "epoll_ctl_old", in: []byte("214"), want: "printargs"},
			{name: "cachestat", in: []byte("451"), want: "cachestat"},
			{name: "lsm_list_modules", in: []byte("461"), want: "lsm_list_modules"},
			// ebpf_exporter's table ends at 461: later ones keep the
			// kernel's name rather than ebpf_exporter's unknown_syscall:N.
			{name: "mseal", in: []byte("462"), want: "mseal"},
			{name: "unknown", in: []byte("9999"), want: "unknown_syscall:9999"},
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			runDecodeCases(t, config.Decoder{Name: "syscall"}, tc.env, tc.cases)
		})
	}
	if n := len(ebpfExporterSyscallNames); n != 37 {
		t.Errorf("ebpf_exporter's table differs from the kernel's in %d names, want 37", n)
	}
}
