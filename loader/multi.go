package loader

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"

	"github.com/probe-exporter/probe_exporter/internal/elfread"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// Attach kinds of libbpf's multi-probe sections: one link attaches the
// program to every function a glob pattern matches.
const (
	kindKprobeMulti     = "kprobe.multi"
	kindKretprobeMulti  = "kretprobe.multi"
	kindUprobeMulti     = "uprobe.multi"
	kindUretprobeMulti  = "uretprobe.multi"
	availableFilterFile = "available_filter_functions"
)

// attachKprobeMulti attaches kprobe.multi/PATTERN and kretprobe.multi/PATTERN
// programs; the pattern is matched, as libbpf does, against the functions
// tracefs lists as traceable.
func attachKprobeMulti(p *Program, ks *symtab.Kallsyms) error {
	a := p.Attach
	syms, err := kernelFunctions(a.Target)
	if err != nil {
		return fmt.Errorf("%s %s: %w", a.Kind, a.Target, err)
	}
	opts := link.KprobeMultiOptions{Symbols: syms}
	var l link.Link
	if a.Kind == kindKprobeMulti {
		l, err = link.KprobeMulti(p.Program, opts)
	} else {
		l, err = link.KretprobeMulti(p.Program, opts)
	}
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("%s %s: this kernel has no kprobe.multi links (Linux >= 5.18 built with CONFIG_FPROBE): %w", a.Kind, a.Target, err)
		}
		return explainKprobe(a.Kind, a.Target, err, ks)
	}
	p.attachments.add(l)
	return nil
}

// kernelFunctions expands a glob pattern into the traceable kernel
// functions it matches; a plain name is returned as is.
func kernelFunctions(pattern string) ([]string, error) {
	if !strings.ContainsAny(pattern, "*?[") {
		return []string{pattern}, nil
	}
	f, err := os.Open(TracefsPath + "/" + availableFilterFile)
	if err != nil {
		return nil, fmt.Errorf("matching the pattern needs tracefs: %w", explainTracefs(err))
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "name" or "name [module]"
		name, _, _ := strings.Cut(sc.Text(), " ")
		if ok, _ := path.Match(pattern, name); ok && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kernel has no traceable function matching %q", pattern)
	}
	return out, nil
}

// attachUprobeMulti attaches uprobe.multi/PATH:PATTERN and
// uretprobe.multi/PATH:PATTERN programs to every function of the file the
// pattern matches, for every process.
func attachUprobeMulti(p *Program) error {
	a := p.Attach
	path, err := ResolveBinary(a.Path, "")
	if err != nil {
		return fmt.Errorf("%s: %w", a.Kind, err)
	}
	// Opened safely (a regular file, never a FIFO planted there), and
	// probed through its /proc/self/fd path: the very file checked.
	f, err := safeopen.Configured(path, safeopen.Rules{})
	if err != nil {
		return fmt.Errorf("%s: %w", a.Kind, err)
	}
	defer f.Close()
	syms, err := elfFunctions(f.ProcPath(), a.Target)
	if err != nil {
		return fmt.Errorf("%s %s:%s: %w", a.Kind, a.Path, a.Target, f.Named(err))
	}
	ex, err := link.OpenExecutable(f.ProcPath())
	if err != nil {
		return fmt.Errorf("%s: %w", a.Kind, f.Named(err))
	}
	var l link.Link
	if a.Kind == kindUprobeMulti {
		l, err = ex.UprobeMulti(syms, p.Program, nil)
	} else {
		l, err = ex.UretprobeMulti(syms, p.Program, nil)
	}
	if err != nil {
		// cilium/ebpf reports EINVAL as is, which is also what kernels
		// without uprobe.multi links answer: probe for them.
		if errors.Is(err, ebpf.ErrNotSupported) || features.HaveBPFLinkUprobeMulti() != nil {
			return fmt.Errorf("%s %s:%s: this kernel has no uprobe.multi links (Linux >= 6.6): %w", a.Kind, a.Path, a.Target, err)
		}
		return fmt.Errorf("%s %s:%s: %w", a.Kind, a.Path, a.Target, f.Named(err))
	}
	p.attachments.add(l)
	return nil
}

// elfFunctions lists the defined functions of an ELF file matching a glob
// pattern; a plain name is returned as is.
func elfFunctions(file, pattern string) ([]string, error) {
	if !strings.ContainsAny(pattern, "*?[") {
		return []string{pattern}, nil
	}
	// The file is any user's binary: read it within elfread's bounds.
	f, err := elfread.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := map[string]bool{}
	for _, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
		syms, err := f.Functions(typ)
		if err != nil && !errors.Is(err, elfread.ErrNoSymbols) {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		for _, s := range syms {
			name, _, _ := strings.Cut(s.Name, "@") // versioned dynamic symbols
			if seen[name] {
				continue
			}
			if ok, _ := path.Match(pattern, name); ok {
				seen[name] = true
			}
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("%s has no function matching %q", file, pattern)
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}
