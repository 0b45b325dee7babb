package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cilium/ebpf/link"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/attach"
)

// attachments are the live attachments of one program: links and other
// closers (perf event fds). Userspace attachers add and remove entries as
// processes come and go, so it is safe for concurrent use.
type attachments struct {
	mu      sync.Mutex
	closers []io.Closer
}

func (a *attachments) add(c io.Closer) {
	a.mu.Lock()
	a.closers = append(a.closers, c)
	a.mu.Unlock()
}

func (a *attachments) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.closers)
}

func (a *attachments) close() error {
	a.mu.Lock()
	cs := a.closers
	a.closers = nil
	a.mu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// AddAttachment records an attachment made outside the loader (by a
// userspace attacher); it is closed with the object.
func (p *Program) AddAttachment(c io.Closer) { p.attachments.add(c) }

func (o *Object) attach(ctx context.Context, p *Program, opts Options) error {
	a := p.Attach
	switch a.Kind {
	case config.AttachTracepoint:
		cat, name, _ := strings.Cut(a.Target, "/")
		l, err := link.Tracepoint(cat, name, p.Program, nil)
		if err != nil {
			return fmt.Errorf("tracepoint %s: %w", a.Target, explainTracefs(err))
		}
		p.attachments.add(l)
	case config.AttachRawTracepoint:
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.Target, Program: p.Program})
		if err != nil {
			return fmt.Errorf("raw tracepoint %s: %w", a.Target, err)
		}
		p.attachments.add(l)
	case "tp_btf", "fentry", "fexit", "fmod_ret":
		l, err := link.AttachTracing(link.TracingOptions{Program: p.Program})
		if err != nil {
			return fmt.Errorf("%s %s: %w", a.Kind, a.Target, err)
		}
		p.attachments.add(l)
	case "lsm":
		l, err := link.AttachLSM(link.LSMOptions{Program: p.Program})
		if err != nil {
			return fmt.Errorf("lsm %s: %w", a.Target, err)
		}
		p.attachments.add(l)
	case "iter":
		l, err := link.AttachIter(link.IterOptions{Program: p.Program})
		if err != nil {
			return fmt.Errorf("iter %s: %w", a.Target, err)
		}
		p.attachments.add(l)
	case config.AttachKprobe, config.AttachKretprobe:
		kopts := &link.KprobeOptions{Offset: a.Offset}
		var l link.Link
		var err error
		if a.Kind == config.AttachKprobe {
			l, err = link.Kprobe(a.Target, p.Program, kopts)
		} else {
			l, err = link.Kretprobe(a.Target, p.Program, kopts)
		}
		if err != nil {
			return explainKprobe(a.Kind, a.Target, err, opts.kallsyms())
		}
		p.attachments.add(l)
	case kindKprobeMulti, kindKretprobeMulti:
		return attachKprobeMulti(p, opts.kallsyms())
	case kindUprobeMulti, kindUretprobeMulti:
		return attachUprobeMulti(p)
	case config.AttachPerfEvent:
		if a.Perf == nil {
			return errors.New("perf_event program without event: use SEC(\"perf_event/type=N,config=N,frequency=N\") or perf_events: in the config")
		}
		evs, err := attach.OnEveryCPU(p.Program, perfEvent(*a.Perf))
		if err != nil {
			return fmt.Errorf("perf event type=%d config=%d: %w", a.Perf.Type, a.Perf.Name, err)
		}
		p.attachments.add(evs)
	case AttachXDP:
		l, err := attachXDP(p.Program, a.Target)
		if err != nil {
			return err
		}
		p.attachments.add(l)
	case config.AttachUprobe, config.AttachUretprobe, config.AttachUSDT:
		if opts.Userspace != nil {
			return opts.Userspace.Attach(ctx, o, p)
		}
		return attachUprobeAll(p)
	default:
		return fmt.Errorf("attach type %q is not supported", a.Kind)
	}
	return nil
}

// attachUprobeAll attaches a uprobe to a file for every process running it.
func attachUprobeAll(p *Program) error {
	a := p.Attach
	if a.Kind == config.AttachUSDT {
		return errors.New("usdt probes need the userspace attacher")
	}
	if a.Path == "" {
		return fmt.Errorf("%s %s: no binary path; name one in the section (uprobe/PATH:FUNC) or select processes in the config", a.Kind, a.Target)
	}
	path, err := ResolveBinary(a.Path, "")
	if err != nil {
		return fmt.Errorf("%s: %w", a.Kind, err)
	}
	l, err := attach.Uprobe{Path: path, Symbol: a.Target, Offset: a.Offset, Return: a.Kind == config.AttachUretprobe}.Attach(p.Program)
	if err != nil {
		return err
	}
	p.attachments.add(l)
	return nil
}

// explainTracefs turns the missing-tracefs error into advice.
func explainTracefs(err error) error {
	if strings.Contains(err.Error(), "neither debugfs nor tracefs are mounted") {
		return fmt.Errorf("%w (mount it: mount -t tracefs tracefs /sys/kernel/tracing)", err)
	}
	return err
}
