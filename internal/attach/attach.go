// Package attach attaches BPF programs where the loader, the userspace
// attacher and the profiler all need them: a perf event on every online
// CPU, and a uprobe or uretprobe on a file, for every process running it
// or for one.
package attach

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/caps"
	"github.com/probe-exporter/probe_exporter/internal/cpus"
	"github.com/probe-exporter/probe_exporter/internal/elfread"
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
	if u.Symbol != "" {
		// The file may be any user's (a selected process's binary or
		// library): its symbols are read within elfread's bounds and
		// the address handed to cilium/ebpf, which would otherwise
		// read the whole symbol table with debug/elf.
		addr, err := symbolOffset(u.Path, u.Symbol, u.Offset)
		if err != nil {
			return nil, fmt.Errorf("%s %s:%s: %w", u.kind(), u.Path, u.Symbol, err)
		}
		opts.Address, opts.Offset = addr, 0
	}
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

// symbolOffset is the file offset of symbol in the ELF file at path, plus
// offset: where a uprobe on it goes. The symbol's virtual address is turned
// into a file offset by the executable load segment holding it, as the
// kernel's uprobes want.
func symbolOffset(path, symbol string, offset uint64) (uint64, error) {
	f, err := elfread.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var sym elfread.Sym
	found := false
	for _, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
		syms, err := f.Lookup(typ, symbol)
		if err != nil && !errors.Is(err, elfread.ErrNoSymbols) {
			return 0, err
		}
		if s, ok := syms[symbol]; ok && s.Value != 0 {
			sym, found = s, true
			break
		}
	}
	if !found {
		return 0, fmt.Errorf("symbol %s not found in the file's symbol tables", symbol)
	}
	if sym.Size > 0 && offset >= sym.Size {
		return 0, fmt.Errorf("offset %d is past the end of %s (%d bytes)", offset, symbol, sym.Size)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && sym.Value >= p.Vaddr && sym.Value < p.Vaddr+p.Memsz {
			return sym.Value - p.Vaddr + p.Off + offset, nil
		}
	}
	// Not in an executable segment (an object file, or a symbol of data):
	// the address as it is, as cilium/ebpf takes it.
	return sym.Value + offset, nil
}
