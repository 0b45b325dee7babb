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
	runDecodeCases(t, config.Decoder{Name: "syscall"}, nil, []decodeCase{
		{name: "read", in: []byte("0"), want: "read"},
		{name: "getppid", in: []byte("110"), want: "getppid"},
		{name: "unknown", in: []byte("9999"), want: "unknown_syscall:9999"},
	})
}
