package caps

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Capability numbers the exporter reasons about (linux/capability.h).
const (
	DacReadSearch = 2
	Kill          = 5
	NetAdmin      = 12
	SysModule     = 16
	SysPtrace     = 19
	SysAdmin      = 21
	SysResource   = 24
	Syslog        = 34
	Perfmon       = 38
	BPF           = 39
	// CheckpointRestore opens /proc/PID/map_files entries (Linux >= 5.9).
	CheckpointRestore = 40
)

// Mask is the set of the given capability numbers.
func Mask(cs ...int) uint64 {
	var m uint64
	for _, c := range cs {
		m |= 1 << uint(c)
	}
	return m
}

// All is every capability the kernel knows.
func All() uint64 {
	n := lastCap()
	if n >= 63 {
		return ^uint64(0)
	}
	return 1<<uint(n+1) - 1
}

// Need is what one configured feature needs, and why.
type Need struct {
	Feature string
	Caps    uint64
	Why     string
}

// Plan is the outcome of matching needs against what is held and what
// --capabilities.keep allows.
type Plan struct {
	// Keep is what the exporter keeps after start (effective, permitted
	// and bounding sets).
	Keep uint64
	// Needs are the configured features' needs.
	Needs []Need
	// Unmet are the needs not covered by Keep, with what is missing.
	Unmet []Unmet
	// DropNothing is set when every held capability is kept.
	DropNothing bool
}

// Unmet is a feature that cannot work with the kept capabilities.
type Unmet struct {
	Need
	Missing uint64
}

func (u Unmet) Error() string {
	return fmt.Sprintf("%s needs %s, which is not kept: %s", u.Feature, strings.Join(Names(u.Missing), ","), u.Why)
}

// Auto is the --capabilities.keep value that keeps what the configured
// features need.
const Auto = "auto"

// NewPlan decides what to keep: with keep "auto", what the needs name (of
// what is held); with "all", everything held; otherwise the list given,
// and needs it leaves out are reported as unmet.
func NewPlan(keep string, held uint64, needs []Need) (Plan, error) {
	p := Plan{Needs: needs}
	switch k := strings.ToLower(strings.TrimSpace(keep)); k {
	case Auto, "":
		for _, n := range needs {
			p.Keep |= n.Caps
		}
		p.Keep &= held
	case "all":
		p.Keep, p.DropNothing = held, true
	case "none":
		// ebpf_exporter's word for keeping no capability.
		p.Keep = 0
	default:
		m, err := Parse(keep)
		if err != nil {
			return p, fmt.Errorf("--capabilities.keep: %w", err)
		}
		p.Keep = m & held
	}
	for _, n := range needs {
		if miss := n.Caps &^ p.Keep &^ optional; miss != 0 {
			p.Unmet = append(p.Unmet, Unmet{Need: n, Missing: miss})
		}
	}
	return p, nil
}

// optional capabilities are kept when held but their absence breaks
// nothing on current kernels (CAP_SYS_RESOURCE raises RLIMIT_MEMLOCK,
// which kernels since 5.11 no longer charge BPF memory to; without
// CAP_CHECKPOINT_RESTORE, which kernels before 5.9 lack, mapped files are
// opened by path and checked to be the inode mapped).
const optional = 1<<SysResource | 1<<CheckpointRestore

// UnmetFor reports the unmet need of feature, if any.
func (p Plan) UnmetFor(feature string) (Unmet, bool) {
	for _, u := range p.Unmet {
		if u.Feature == feature {
			return u, true
		}
	}
	return Unmet{}, false
}

// Held is the calling thread's permitted set.
func Held() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32, nil
}

// Effective reports whether the calling thread has capability c
// effective.
func Effective(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	eff := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	return eff&(1<<uint(c)) != 0
}

// Bounding is the process's bounding set, from /proc/self/status.
func Bounding() (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapBnd in /proc/self/status")
}

// Explain adds to a permission error (EPERM, EACCES) the capability c that
// what needs, when this process no longer has it effective: the error then
// says why instead of only "permission denied".
func Explain(err error, c int, what string) error {
	if err == nil || !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) || Effective(c) {
		return err
	}
	return fmt.Errorf("%w (%s needs %s, not kept after start: see --capabilities.keep)", err, what, names[c])
}
