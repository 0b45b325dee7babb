// Package loader loads the BPF object of one config, attaches its programs
// by their libbpf SEC() names (or by the explicit attach points of
// v1-layout configs) and keeps every failure local to that config.
package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// Options tune loading.
type Options struct {
	Logger *slog.Logger
	// Kaddr resolves a kernel symbol to its address for `kaddrs`.
	Kaddr func(name string) (uint64, error)
	// Kallsyms is the kernel's symbol table, shared with the decoders,
	// which tells a kprobe on a missing function from other failures; nil
	// reads /proc/kallsyms when a kprobe fails.
	Kallsyms *symtab.Kallsyms
	// Compiler compiles inline code of v1-layout configs.
	Compiler *Compiler
	// Userspace attaches uprobes and USDT probes on chosen processes; nil
	// attaches them to every process running the file.
	Userspace UserspaceAttacher
	// KernelTypes is the kernel's BTF for CO-RE relocations when the
	// kernel lacks /sys/kernel/btf/vmlinux (--btf.path, as ebpf_exporter's);
	// nil uses the running kernel's.
	KernelTypes *btf.Spec
}

func (o Options) kallsyms() *symtab.Kallsyms {
	if o.Kallsyms == nil {
		return symtab.NewKallsyms("/proc/kallsyms")
	}
	return o.Kallsyms
}

// UserspaceAttacher attaches userspace probes of a config to the processes
// its targets select, following processes that come and go.
type UserspaceAttacher interface {
	Attach(ctx context.Context, obj *Object, prog *Program) error
}

// Program is one BPF program of a config and its attach state.
type Program struct {
	Name    string
	Section string
	Attach  Attachment
	Program *ebpf.Program
	// AttachType is the program's expected attach type (a dispatcher in
	// front of it must have the same to tail-call it).
	AttachType ebpf.AttachType
	// Err is the load or attach failure, nil when attached.
	Err error
	// Skipped is set for programs that have no attach point (helpers,
	// tail calls); they neither count as attached nor as failed.
	Skipped bool
	// Absent is set, with Err, for an attach point of an ebpf_exporter
	// v1-layout config (kprobes: and the like) that the running kernel
	// cannot have: its function does not exist, or its bcc code reads a
	// field the kernel lacks. Those lists name alternatives for different
	// kernels (blk_start_request and blk_mq_start_request), so an absent
	// one does not fail the config while another attaches.
	Absent bool

	attachments attachments
}

// Attached reports whether the program is loaded and attached.
func (p *Program) Attached() bool {
	return p.Err == nil && !p.Skipped && p.Program != nil && p.attachments.len() > 0
}

// Object is a loaded config.
type Object struct {
	Config     config.Config
	Collection *ebpf.Collection
	Programs   []*Program
	// Err is set when the config as a whole failed (object missing, maps
	// refused, every program failed).
	Err error

	onClose []func()
}

// OnClose runs f when the object closes, before its maps are released
// (helpers feeding its maps stop there).
func (o *Object) OnClose(f func()) { o.onClose = append(o.onClose, f) }

// Map returns the named map or nil.
func (o *Object) Map(name string) *ebpf.Map {
	if o.Collection == nil {
		return nil
	}
	return o.Collection.Maps[name]
}

// Failed reports whether the config or any of its programs failed (an
// absent attach point is not a failure).
func (o *Object) Failed() bool {
	if o.Err != nil {
		return true
	}
	for _, p := range o.Programs {
		if p.Err != nil && !p.Absent {
			return true
		}
	}
	return false
}

// Errors lists every failure of the config, each naming the config and,
// where it applies, the program.
func (o *Object) Errors() []error {
	var errs []error
	if o.Err != nil {
		errs = append(errs, o.Err)
	}
	for _, p := range o.Programs {
		if p.Err != nil {
			errs = append(errs, fmt.Errorf("config %q (%s): program %q (SEC %q): %w", o.Config.Name, o.Config.Path, p.Name, p.Section, p.Err))
		}
	}
	return errs
}

// Close detaches every program and releases maps and programs.
func (o *Object) Close() error {
	for i := len(o.onClose) - 1; i >= 0; i-- {
		o.onClose[i]()
	}
	o.onClose = nil
	var errs []error
	for _, p := range o.Programs {
		errs = append(errs, p.attachments.close())
	}
	if o.Collection != nil {
		o.Collection.Close()
		o.Collection = nil
	}
	return errors.Join(errs...)
}

// Load loads and attaches one config. It never returns nil: failures are
// recorded on the Object (as a whole in Err, per program in Program.Err).
func Load(ctx context.Context, cfg config.Config, opts Options) *Object {
	obj := &Object{Config: cfg}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	spec, compiled, err := loadSpec(ctx, cfg, opts)
	if err != nil {
		obj.Err = fmt.Errorf("config %q: %w", cfg.Name, err)
		return obj
	}
	obj.Config.Metrics = withPIDLabels(cfg.Metrics, compiled.PIDMaps, spec)
	if err := setKaddrs(spec, cfg, opts); err != nil {
		obj.Err = fmt.Errorf("%s: %w", cfg.At(cfg.KaddrsLine), err)
		return obj
	}
	obj.Programs = programsOf(spec, cfg)
	markDropped(obj.Programs, compiled.Dropped)
	if err := obj.load(spec, opts.KernelTypes); err != nil {
		obj.Err = fmt.Errorf("config %q (%s): %w", cfg.Name, where(cfg), err)
		return obj
	}
	for _, p := range obj.Programs {
		if p.Err != nil || p.Skipped {
			continue
		}
		p.Err = obj.attach(ctx, p, opts)
		if p.Err != nil {
			opts.Logger.Error("attach failed", "config", cfg.Name, "program", p.Name, "section", p.Section, "err", p.Err)
		}
	}
	if len(cfg.Attach) > 0 {
		for _, p := range obj.Programs {
			var lacks *kernelLacks
			p.Absent = p.Err != nil && errors.As(p.Err, &lacks)
		}
	}
	if len(obj.Programs) > 0 && allFailed(obj.Programs) {
		obj.Err = fmt.Errorf("config %q (%s): no program could be attached", cfg.Name, where(cfg))
	}
	return obj
}

func where(cfg config.Config) string {
	if cfg.Path == "" {
		return "embedded"
	}
	return cfg.Path
}

func allFailed(ps []*Program) bool {
	n := 0
	for _, p := range ps {
		if p.Skipped {
			continue
		}
		n++
		if p.Err == nil {
			return false
		}
	}
	return n > 0
}

// programsOf lists the programs of spec with their attach points: explicit
// ones from a v1-layout config, SEC() names otherwise.
func programsOf(spec *ebpf.CollectionSpec, cfg config.Config) []*Program {
	var progs []*Program
	explicit := map[string][]config.AttachPoint{}
	for _, ap := range cfg.Attach {
		explicit[ap.Program] = append(explicit[ap.Program], ap)
	}
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ps := spec.Programs[name]
		if aps, ok := explicit[name]; ok {
			for _, ap := range aps {
				progs = append(progs, &Program{Name: name, Section: ps.SectionName, Attach: fromAttachPoint(ap)})
			}
			continue
		}
		p := &Program{Name: name, Section: ps.SectionName}
		if len(cfg.Attach) > 0 {
			// v1-layout configs attach only what they list.
			p.Skipped = true
		} else {
			a, err := ParseSection(ps.SectionName)
			switch {
			case errors.Is(err, errNoAutoAttach):
				p.Skipped = ps.Type != ebpf.Kprobe || cfg.Attachments == nil
				if !p.Skipped {
					p.Err = fmt.Errorf("section %q names no attach point", ps.SectionName)
				}
			case err != nil:
				p.Err = err
			default:
				p.Attach = a
			}
		}
		progs = append(progs, p)
	}
	for prog, aps := range explicit {
		if _, ok := spec.Programs[prog]; !ok {
			for _, ap := range aps {
				progs = append(progs, &Program{Name: prog, Err: fmt.Errorf("%s:%d: attach point %s %q names program %q, which the code does not define", cfg.Path, ap.Line, ap.Kind, ap.Target, prog)})
			}
		}
	}
	return progs
}

func fromAttachPoint(ap config.AttachPoint) Attachment {
	a := Attachment{Kind: ap.Kind, Target: ap.Target, Perf: ap.PerfEvent}
	switch ap.Kind {
	case config.AttachTracepoint:
		a.Target = strings.Replace(ap.Target, ":", "/", 1)
	case config.AttachKprobe, config.AttachKretprobe:
		a.Target, a.Offset, _ = splitOffset(ap.Target)
	case config.AttachUSDT:
		if prov, name, ok := strings.Cut(ap.Target, ":"); ok {
			a.Provider, a.Target = prov, name
		}
	}
	return a
}

// load creates maps and programs. A program the kernel refuses is recorded
// on its Program and removed, and the rest are loaded without it, so one
// refused program type does not take its config's other programs down.
func (o *Object) load(spec *ebpf.CollectionSpec, kernelTypes *btf.Spec) error {
	byName := map[string][]*Program{}
	for _, p := range o.Programs {
		byName[p.Name] = append(byName[p.Name], p)
	}
	for _, p := range o.Programs {
		if p.Err != nil || p.Skipped {
			// Programs we will not attach need not be loaded, except
			// helpers without attach point, which may be tail call targets.
			if p.Err != nil {
				delete(spec.Programs, p.Name)
			}
		}
	}
	for attempt := 0; attempt <= len(o.Programs); attempt++ {
		coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
			Programs: ebpf.ProgramOptions{KernelTypes: kernelTypes},
		})
		if err == nil {
			o.Collection = coll
			for _, p := range o.Programs {
				if p.Err == nil {
					p.Program = coll.Programs[p.Name]
					if ps := spec.Programs[p.Name]; ps != nil {
						p.AttachType = ps.AttachType
					}
				}
			}
			return nil
		}
		name := failedProgram(err)
		ps, ok := byName[name]
		if name == "" || !ok {
			return describeLoadError(err)
		}
		for _, p := range ps {
			p.Err = describeLoadError(explainLoad(p.Attach, err))
		}
		delete(spec.Programs, name)
	}
	return errors.New("every program was refused")
}

var programErrRE = regexp.MustCompile(`^program ([^ :]+): `)

// failedProgram extracts the program name from a cilium/ebpf load error.
func failedProgram(err error) string {
	m := programErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	return m[1]
}

// verifierTail is how many lines of a verifier log are kept in errors.
const verifierTail = 12

// describeLoadError adds the tail of the verifier log to a load error.
func describeLoadError(err error) error {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return err
	}
	log := ve.Log
	if len(log) > verifierTail {
		log = log[len(log)-verifierTail:]
	}
	return fmt.Errorf("%w\nverifier log (last %d lines):\n  %s", err, len(log), strings.Join(log, "\n  "))
}

// unbuiltHint says, when a missing NAME.bpf.o has its source NAME.bpf.c
// beside it (a checkout whose examples were not built), how to build it.
func unbuiltHint(object string, err error) string {
	if !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	src := strings.TrimSuffix(object, ".o") + ".c"
	if src == object+".c" {
		return ""
	}
	if _, err := os.Stat(src); err != nil {
		return ""
	}
	dir := filepath.Dir(object)
	if _, err := os.Stat(filepath.Join(dir, "Makefile")); err == nil {
		return fmt.Sprintf(" (its source %s is beside it, not yet compiled: make -C %s)", filepath.Base(src), dir)
	}
	return fmt.Sprintf(" (its source %s is beside it, not yet compiled: clang -O2 -g -target bpf -c %s -o %s)", filepath.Base(src), src, object)
}

func loadSpec(ctx context.Context, cfg config.Config, opts Options) (*ebpf.CollectionSpec, *Compiled, error) {
	obj := cfg.Object
	what := "embedded object"
	compiled := &Compiled{}
	switch {
	case obj != nil:
	case cfg.Code != "":
		if opts.Compiler == nil {
			return nil, nil, errors.New("inline code needs a compiler")
		}
		var err error
		if compiled, err = opts.Compiler.CompileAll(ctx, cfg); err != nil {
			return nil, nil, err
		}
		obj = compiled.Object
		what = "compiled inline code"
	default:
		var err error
		if obj, err = os.ReadFile(cfg.BPFPath); err != nil {
			return nil, nil, fmt.Errorf("object: %w%s", err, unbuiltHint(cfg.BPFPath, err))
		}
		if err := config.Trusted(cfg.BPFPath); err != nil {
			return nil, nil, fmt.Errorf("object %s: %w", cfg.BPFPath, err)
		}
		what = "object " + cfg.BPFPath
	}
	obj = prepareObject(obj)
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	staticHidden(spec, hiddenFuncs(obj))
	return spec, compiled, nil
}

// setKaddrs writes kernel symbol addresses into kaddr_<name> globals, as
// ebpf_exporter does.
func setKaddrs(spec *ebpf.CollectionSpec, cfg config.Config, opts Options) error {
	for _, name := range cfg.Kaddrs {
		v, ok := spec.Variables["kaddr_"+name]
		if !ok {
			return fmt.Errorf("kaddrs: object has no variable %q", "kaddr_"+name)
		}
		if opts.Kaddr == nil {
			return fmt.Errorf("kaddrs: no kernel symbol table")
		}
		addr, err := opts.Kaddr(name)
		if err != nil {
			return fmt.Errorf("kaddrs: %w", err)
		}
		if err := v.Set(addr); err != nil {
			return fmt.Errorf("kaddrs: setting %q to %#x: %w", "kaddr_"+name, addr, err)
		}
	}
	return nil
}
