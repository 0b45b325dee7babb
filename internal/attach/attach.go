// Package attach attaches BPF programs where the loader, the userspace
// attacher and the profiler all need them: a perf event on every online
// CPU, and a uprobe or uretprobe on a file, for every process running it
// or for one.
package attach

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/caps"
	"github.com/probe-exporter/probe_exporter/internal/cpus"
)

// PerfEvent is a perf event (perf_event_open's type and config) sampled
// every Period events, or Frequency times a second when set.
type PerfEvent struct {
	Type      uint32
	Config    uint64
	Period    uint64
	Frequency uint64
}

// perfEvents are perf event fds, one per online CPU, running one program.
type perfEvents []int

func (p perfEvents) Close() error {
	var errs []error
	for _, fd := range p {
		_ = unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_DISABLE, 0)
		if err := unix.Close(fd); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// OnEveryCPU opens ev on every online CPU (all processes) and runs prog on
// each sample. Closing the result detaches it.
func OnEveryCPU(prog *ebpf.Program, ev PerfEvent) (io.Closer, error) {
	online, err := cpus.Online()
	if err != nil {
		return nil, err
	}
	attr := unix.PerfEventAttr{
		Type:   ev.Type,
		Config: ev.Config,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
	}
	if ev.Frequency > 0 {
		attr.Sample = ev.Frequency
		attr.Bits |= unix.PerfBitFreq
	} else {
		attr.Sample = ev.Period
	}
	var evs perfEvents
	for _, cpu := range online {
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			evs.Close()
			return nil, fmt.Errorf("perf_event_open on cpu %d: %w", cpu, err)
		}
		evs = append(evs, fd)
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
			evs.Close()
			return nil, fmt.Errorf("attaching program on cpu %d: %w", cpu, err)
		}
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			evs.Close()
			return nil, fmt.Errorf("enabling event on cpu %d: %w", cpu, err)
		}
	}
	return evs, nil
}

// Uprobe is a probe on a function of an ELF file.
type Uprobe struct {
	// Path is the file, as the host sees it.
	Path string
	// Symbol is the function; Offset is added to its address.
	Symbol string
	Offset uint64
	// Return makes it a uretprobe, run as the function returns.
	Return bool
	// PID restricts it to one process; 0 is every process running the
	// file.
	PID int
}

func (u Uprobe) kind() string {
	if u.Return {
		return "uretprobe"
	}
	return "uprobe"
}

// Attach places u, running prog. Closing the link removes it.
func (u Uprobe) Attach(prog *ebpf.Program) (link.Link, error) {
	ex, err := link.OpenExecutable(u.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.kind(), err)
	}
	opts := &link.UprobeOptions{Offset: u.Offset, PID: u.PID}
	var l link.Link
	if u.Return {
		l, err = ex.Uretprobe(u.Symbol, prog, opts)
	} else {
		l, err = ex.Uprobe(u.Symbol, prog, opts)
	}
	if err != nil {
		return nil, caps.Explain(fmt.Errorf("%s %s:%s: %w", u.kind(), u.Path, u.Symbol, err), caps.SysAdmin, "uprobes")
	}
	return l, nil
}
