package loader

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// LockdownPath is where the kernel reports its lockdown mode.
const LockdownPath = "/sys/kernel/security/lockdown"

// lockdownMode reads the active kernel lockdown mode ("none", "integrity"
// or "confidentiality"); "" when it cannot be read (securityfs not
// mounted, or a kernel without the lockdown LSM).
func lockdownMode() string {
	b, err := os.ReadFile(LockdownPath)
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return ""
}

// explainPermission turns a kernel EPERM into its likely cause. cilium/ebpf
// blames RLIMIT_MEMLOCK for every EPERM of a program load, but kernels since
// 5.11 charge BPF memory to the memory cgroup and PrepareHost lifts the
// limit anyway; the usual cause is kernel lockdown.
func explainPermission(what string, err error) error {
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	switch mode := lockdownMode(); mode {
	case "integrity", "confidentiality":
		return fmt.Errorf("%s: refused by kernel lockdown (%s mode, %s): %w", what, mode, LockdownPath, unix.EPERM)
	case "none":
		return fmt.Errorf("%s: operation not permitted, and kernel lockdown is off: check capabilities (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) and security modules: %w", what, unix.EPERM)
	}
	return fmt.Errorf("%s: operation not permitted: kernel lockdown or a security module refuses it, or capabilities (CAP_BPF, CAP_PERFMON) are missing (mount securityfs to read %s): %w", what, LockdownPath, unix.EPERM)
}

// explainLoad rewrites load failures whose kernel message misleads:
// "not supported" for a function the kernel does not have, MEMLOCK for an
// EPERM of lockdown.
func explainLoad(a Attachment, err error) error {
	if a.Tracing && a.Target != "" && errors.Is(err, ebpf.ErrNotSupported) {
		if missing := missingTracingTarget(a); missing != "" {
			return fmt.Errorf("%s %s: %s", a.Kind, a.Target, missing)
		}
	}
	return explainPermission(fmt.Sprintf("loading %s %s", a.Kind, a.Target), err)
}

// missingTracingTarget says what the kernel's BTF lacks for a tp_btf,
// fentry, fexit or lsm program, or "" when the target is there.
func missingTracingTarget(a Attachment) string {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return ""
	}
	var name, what string
	switch a.Kind {
	case "tp_btf":
		name, what = "btf_trace_"+a.Target, "kernel has no tracepoint "+a.Target
	case "lsm":
		name, what = "bpf_lsm_"+a.Target, "kernel has no LSM hook "+a.Target
	default:
		name, what = a.Target, "kernel has no function "+a.Target
	}
	if _, err := spec.AnyTypeByName(name); errors.Is(err, btf.ErrNotFound) {
		return what
	}
	return ""
}

// kernelLacks is a failure because the running kernel does not have what
// a program needs (a function to attach to, a field its code reads).
type kernelLacks struct{ err error }

func (e *kernelLacks) Error() string { return e.err.Error() }
func (e *kernelLacks) Unwrap() error { return e.err }

// explainKprobe rewrites kprobe attach failures: a function the kernel does
// not have says so, EPERM names lockdown.
func explainKprobe(kind config.AttachKind, fn string, err error, ks *symtab.Kallsyms) error {
	if errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "tracefs") {
		if ok, kerr := ks.HasFunction(fn); kerr == nil && !ok {
			return &kernelLacks{fmt.Errorf("%s %s: kernel has no function %s", kind, fn, fn)}
		}
	}
	if errors.Is(err, unix.EPERM) {
		return explainPermission(fmt.Sprintf("%s %s", kind, fn), err)
	}
	return fmt.Errorf("%s %s: %w", kind, fn, explainTracefs(err))
}
