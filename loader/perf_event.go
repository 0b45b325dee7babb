package loader

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/cpus"
)

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

// AttachPerfEvent opens the event on every online CPU (all processes) and
// runs prog on each sample. Closing the result detaches it.
func AttachPerfEvent(prog *ebpf.Program, pe config.PerfEvent) (io.Closer, error) {
	return attachPerfEvent(prog, pe)
}

func attachPerfEvent(prog *ebpf.Program, pe config.PerfEvent) (perfEvents, error) {
	online, err := cpus.Online()
	if err != nil {
		return nil, err
	}
	attr := unix.PerfEventAttr{
		Type:   pe.Type,
		Config: pe.Name,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
	}
	if pe.SampleFrequency > 0 {
		attr.Sample = pe.SampleFrequency
		attr.Bits |= unix.PerfBitFreq
	} else {
		attr.Sample = pe.SamplePeriod
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
