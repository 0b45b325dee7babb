package loader

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/probe-exporter/probe_exporter/config"
)

// Attachment is where one program attaches, derived from its libbpf SEC()
// name or from an explicit attach point of a v1-layout config.
type Attachment struct {
	Kind config.AttachKind
	// Target is the tracepoint "category/name", raw tracepoint, kernel
	// function or uprobe symbol; empty for perf events.
	Target string
	// Path is the binary of a uprobe or USDT probe.
	Path string
	// Offset is added to a kprobe or uprobe symbol ("func+0x10").
	Offset uint64
	// Provider is the USDT provider; Target is then the probe name.
	Provider string
	// Perf is set for perf events.
	Perf *config.PerfEvent
	// Tracing marks BTF-based programs (tp_btf, fentry, fexit, lsm) whose
	// target the loader already resolved at load time.
	Tracing bool
}

func (a Attachment) String() string {
	switch {
	case a.Kind == config.AttachPerfEvent && a.Perf != nil:
		return fmt.Sprintf("perf_event type=%d config=%d", a.Perf.Type, a.Perf.Name)
	case a.Kind == config.AttachUSDT:
		return fmt.Sprintf("usdt %s:%s:%s", a.Path, a.Provider, a.Target)
	case a.Path != "":
		return fmt.Sprintf("%s %s:%s", a.Kind, a.Path, a.Target)
	}
	return fmt.Sprintf("%s %s", a.Kind, a.Target)
}

// AttachXDP attaches an XDP program to the network interface named by
// Target (SEC("xdp/eth0")), in the exporter's network namespace.
const AttachXDP config.AttachKind = "xdp"

// errNoAutoAttach marks sections that carry no attach point (e.g. a bare
// SEC("uprobe")); such programs are attached by explicit configuration or
// are helpers that are never attached (tail calls, freplace).
var errNoAutoAttach = fmt.Errorf("section names no attach point")

// ParseSection derives the attach point from a libbpf SEC() name, following
// libbpf's conventions.
func ParseSection(sec string) (Attachment, error) {
	sec = strings.TrimPrefix(sec, "?")
	kind, rest, hasRest := strings.Cut(sec, "/")
	switch kind {
	case "tracepoint", "tp":
		cat, name, ok := strings.Cut(rest, "/")
		if !ok || cat == "" || name == "" {
			return Attachment{}, fmt.Errorf("section %q: want %s/CATEGORY/NAME", sec, kind)
		}
		return Attachment{Kind: config.AttachTracepoint, Target: cat + "/" + name}, nil
	case "raw_tp", "raw_tracepoint", "raw_tp.w", "raw_tracepoint.w":
		if rest == "" {
			return Attachment{}, errNoAutoAttach
		}
		return Attachment{Kind: config.AttachRawTracepoint, Target: rest}, nil
	case "tp_btf", "fentry", "fexit", "fmod_ret", "lsm", "fentry.s", "fexit.s", "lsm.s", "iter":
		if rest == "" {
			return Attachment{}, errNoAutoAttach
		}
		return Attachment{Kind: config.AttachKind(strings.TrimSuffix(kind, ".s")), Target: rest, Tracing: true}, nil
	case kindKprobeMulti, kindKretprobeMulti:
		if rest == "" {
			return Attachment{}, errNoAutoAttach
		}
		return Attachment{Kind: config.AttachKind(kind), Target: rest}, nil
	case kindUprobeMulti, kindUretprobeMulti, kindUprobeMulti + ".s", kindUretprobeMulti + ".s":
		i := strings.LastIndex(rest, ":")
		if rest == "" {
			return Attachment{}, errNoAutoAttach
		}
		if i <= 0 || i == len(rest)-1 {
			return Attachment{}, fmt.Errorf("section %q: want %s/PATH:PATTERN", sec, kind)
		}
		return Attachment{Kind: config.AttachKind(strings.TrimSuffix(kind, ".s")), Path: rest[:i], Target: rest[i+1:]}, nil
	case "kprobe", "kretprobe":
		if rest == "" {
			return Attachment{}, errNoAutoAttach
		}
		fn, off, err := splitOffset(rest)
		if err != nil {
			return Attachment{}, fmt.Errorf("section %q: %w", sec, err)
		}
		return Attachment{Kind: config.AttachKind(kind), Target: fn, Offset: off}, nil
	case "ksyscall", "kretsyscall":
		if rest == "" {
			return Attachment{}, errNoAutoAttach
		}
		k := config.AttachKprobe
		if kind == "kretsyscall" {
			k = config.AttachKretprobe
		}
		return Attachment{Kind: k, Target: syscallPrefix(runtime.GOARCH) + rest}, nil
	case "uprobe", "uretprobe", "uprobe.s", "uretprobe.s":
		if rest == "" {
			return Attachment{}, errNoAutoAttach
		}
		// libbpf: uprobe/PATH:FUNC[+OFFSET]; the path may itself contain ':'
		// only in exotic cases, so split at the last colon.
		i := strings.LastIndex(rest, ":")
		if i <= 0 || i == len(rest)-1 {
			return Attachment{}, fmt.Errorf("section %q: want %s/PATH:FUNCTION[+OFFSET]", sec, kind)
		}
		fn, off, err := splitOffset(rest[i+1:])
		if err != nil {
			return Attachment{}, fmt.Errorf("section %q: %w", sec, err)
		}
		k := config.AttachUprobe
		if strings.HasPrefix(kind, "uretprobe") {
			k = config.AttachUretprobe
		}
		return Attachment{Kind: k, Path: rest[:i], Target: fn, Offset: off}, nil
	case "usdt", "usdt.s":
		if rest == "" {
			return Attachment{}, errNoAutoAttach
		}
		// libbpf: usdt/PATH:PROVIDER:NAME
		parts := strings.Split(rest, ":")
		if len(parts) < 3 {
			return Attachment{}, fmt.Errorf("section %q: want usdt/PATH:PROVIDER:NAME", sec)
		}
		n := len(parts)
		return Attachment{Kind: config.AttachUSDT, Path: strings.Join(parts[:n-2], ":"), Provider: parts[n-2], Target: parts[n-1]}, nil
	case "xdp", "xdp.frags":
		// ebpf_exporter's xdp/IFNAME: attach to that interface. A bare
		// xdp, or a devmap or cpumap program, has no interface to attach to.
		if rest == "" || rest == "devmap" || rest == "cpumap" {
			return Attachment{}, errNoAutoAttach
		}
		return Attachment{Kind: AttachXDP, Target: rest}, nil
	case "perf_event":
		if !hasRest {
			return Attachment{}, errNoAutoAttach
		}
		pe, err := parsePerfEvent(rest)
		if err != nil {
			return Attachment{}, fmt.Errorf("section %q: %w", sec, err)
		}
		return Attachment{Kind: config.AttachPerfEvent, Perf: pe}, nil
	}
	return Attachment{}, fmt.Errorf("section %q: attach type %q is not supported", sec, kind)
}

// syscallPrefix is the prefix of the kernel's syscall wrappers on the Go
// architecture goarch, which ksyscall/NAME attaches to as libbpf does:
// __x64_sys_ on x86-64, __arm64_sys_ on arm64 (an x86 prefix there named
// no function, and the program failed to attach).
func syscallPrefix(goarch string) string {
	switch goarch {
	case "amd64":
		return "__x64_sys_"
	case "arm64":
		return "__arm64_sys_"
	case "s390x":
		return "__s390x_sys_"
	case "riscv64":
		return "__riscv_sys_"
	}
	return "sys_"
}

func splitOffset(s string) (string, uint64, error) {
	fn, offs, ok := strings.Cut(s, "+")
	if !ok {
		return fn, 0, nil
	}
	off, err := strconv.ParseUint(offs, 0, 64)
	if err != nil {
		return "", 0, fmt.Errorf("bad offset %q", offs)
	}
	return fn, off, nil
}

// parsePerfEvent parses "type=N,config=N,frequency=N" (or period=N).
func parsePerfEvent(s string) (*config.PerfEvent, error) {
	pe := &config.PerfEvent{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("perf event parameter %q: want key=value", kv)
		}
		n, err := strconv.ParseUint(v, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("perf event parameter %q: %w", kv, err)
		}
		switch k {
		case "type":
			pe.Type = uint32(n)
		case "config", "name":
			pe.Name = n
		case "frequency", "freq", "sample_frequency":
			pe.SampleFrequency = n
		case "period", "sample_period":
			pe.SamplePeriod = n
		default:
			return nil, fmt.Errorf("perf event parameter %q: unknown key (want type, config, frequency or period)", k)
		}
	}
	if pe.SampleFrequency == 0 && pe.SamplePeriod == 0 {
		return nil, fmt.Errorf("perf event needs frequency=N or period=N")
	}
	return pe, nil
}
