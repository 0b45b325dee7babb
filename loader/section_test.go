package loader

import (
	"runtime"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestParseSection(t *testing.T) {
	for _, tc := range []struct {
		sec     string
		want    Attachment
		wantErr string
	}{
		{sec: "tracepoint/syscalls/sys_enter_read", want: Attachment{Kind: config.AttachTracepoint, Target: "syscalls/sys_enter_read"}},
		{sec: "tp/sched/sched_switch", want: Attachment{Kind: config.AttachTracepoint, Target: "sched/sched_switch"}},
		{sec: "raw_tp/sys_enter", want: Attachment{Kind: config.AttachRawTracepoint, Target: "sys_enter"}},
		{sec: "raw_tracepoint/block_rq_issue", want: Attachment{Kind: config.AttachRawTracepoint, Target: "block_rq_issue"}},
		{sec: "tp_btf/sched_wakeup", want: Attachment{Kind: "tp_btf", Target: "sched_wakeup", Tracing: true}},
		{sec: "fentry/do_unlinkat", want: Attachment{Kind: "fentry", Target: "do_unlinkat", Tracing: true}},
		{sec: "fexit/do_unlinkat", want: Attachment{Kind: "fexit", Target: "do_unlinkat", Tracing: true}},
		{sec: "kprobe/do_sys_open", want: Attachment{Kind: config.AttachKprobe, Target: "do_sys_open"}},
		{sec: "kprobe/tcp_v4_connect+0x10", want: Attachment{Kind: config.AttachKprobe, Target: "tcp_v4_connect", Offset: 16}},
		{sec: "kretprobe/do_sys_open", want: Attachment{Kind: config.AttachKretprobe, Target: "do_sys_open"}},
		{sec: "ksyscall/openat", want: Attachment{Kind: config.AttachKprobe, Target: syscallPrefix(runtime.GOARCH) + "openat"}},
		{sec: "uprobe/libc.so.6:malloc", want: Attachment{Kind: config.AttachUprobe, Path: "libc.so.6", Target: "malloc"}},
		{sec: "uretprobe//usr/bin/bash:readline", want: Attachment{Kind: config.AttachUretprobe, Path: "/usr/bin/bash", Target: "readline"}},
		{sec: "uprobe//bin/x:f+8", want: Attachment{Kind: config.AttachUprobe, Path: "/bin/x", Target: "f", Offset: 8}},
		{sec: "usdt/python3:python:import__find__load__start", want: Attachment{Kind: config.AttachUSDT, Path: "python3", Provider: "python", Target: "import__find__load__start"}},
		{sec: "usdt//usr/bin/python3.11:python:gc__start", want: Attachment{Kind: config.AttachUSDT, Path: "/usr/bin/python3.11", Provider: "python", Target: "gc__start"}},
		{sec: "perf_event/type=1,config=0,frequency=99", want: Attachment{Kind: config.AttachPerfEvent, Perf: &config.PerfEvent{Type: 1, Name: 0, SampleFrequency: 99}}},
		{sec: "perf_event/type=0,config=3,period=10000", want: Attachment{Kind: config.AttachPerfEvent, Perf: &config.PerfEvent{Type: 0, Name: 3, SamplePeriod: 10000}}},
		{sec: "uprobe", wantErr: errNoAutoAttach.Error()},
		{sec: "usdt", wantErr: errNoAutoAttach.Error()},
		{sec: "perf_event", wantErr: errNoAutoAttach.Error()},
		{sec: "tracepoint/nocat", wantErr: "want tracepoint/CATEGORY/NAME"},
		{sec: "uprobe/nocolon", wantErr: "want uprobe/PATH:FUNCTION"},
		{sec: "kprobe/f+zz", wantErr: "bad offset"},
		{sec: "perf_event/type=1", wantErr: "needs frequency=N or period=N"},
		{sec: "perf_event/type=1,bogus=2", wantErr: "unknown key"},
		{sec: "tc", wantErr: `attach type "tc" is not supported`},
	} {
		t.Run(tc.sec, func(t *testing.T) {
			got, err := ParseSection(tc.sec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want.String() || got.Offset != tc.want.Offset || got.Tracing != tc.want.Tracing || got.Kind != tc.want.Kind {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if tc.want.Perf != nil && *got.Perf != *tc.want.Perf {
				t.Fatalf("perf %+v, want %+v", *got.Perf, *tc.want.Perf)
			}
		})
	}
}

func TestResolveBinary(t *testing.T) {
	if _, err := ResolveBinary("libc.so.6", ""); err != nil {
		t.Errorf("libc.so.6: %v", err)
	}
	if p, err := ResolveBinary("sh", ""); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("sh: %q %v", p, err)
	}
	if _, err := ResolveBinary("libdoesnotexist.so.1", ""); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing library: %v", err)
	}
	if _, err := ResolveBinary("/no/such/bin", ""); err == nil {
		t.Error("missing absolute path resolved")
	}
}

func TestFailedProgram(t *testing.T) {
	for in, want := range map[string]string{
		"program count_read: load program: permission denied": "count_read",
		"map foo: create: invalid argument":                   "",
	} {
		if got := failedProgram(errString(in)); got != want {
			t.Errorf("failedProgram(%q) = %q, want %q", in, got, want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestSyscallPrefix: ksyscall/NAME names the wrapper of each architecture,
// as libbpf's ksyscall does.
func TestSyscallPrefix(t *testing.T) {
	for goarch, want := range map[string]string{"amd64": "__x64_sys_", "arm64": "__arm64_sys_", "mips": "sys_"} {
		if got := syscallPrefix(goarch); got != want {
			t.Errorf("%s: %q, want %q", goarch, got, want)
		}
	}
}
