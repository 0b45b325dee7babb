// Package bcc translates BPF C written in bcc's dialect (the inline code:
// of ebpf_exporter v1 and ebpf-userspace-exporter configs) to libbpf-style
// CO-RE C that clang compiles against the running kernel's vmlinux.h, so
// those configs run unchanged without bcc.
//
// The translation has two passes. The first works on tokens and keeps
// every line where it was: it drops kernel #includes (vmlinux.h has the
// types), turns map methods (m.increment(k)) into macro calls, gives the
// functions the config attaches their SEC() and the kprobe arguments after
// ctx their PT_REGS_PARMn, and expands TRACEPOINT_PROBE. The second runs
// clang on the result and walks its JSON AST: every load through a kernel
// pointer (req->rq_disk->disk_name) becomes a bpf_probe_read_kernel, as
// bcc's rewriter does; a field or type the kernel lacks is reported by
// name, and only the function using it is left out.
package bcc

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Probe is one attach point of the config, naming a function of the code.
type Probe struct {
	// Kind is kprobe, kretprobe, tracepoint, raw_tracepoint, perf_event,
	// usdt, uprobe or uretprobe.
	Kind string
	// Target is the kernel function, category:name, provider:name or
	// symbol the probe attaches to.
	Target string
	Func   string
}

// Source is the bcc-dialect code of one config.
type Source struct {
	// Config names the config in errors.
	Config string
	Code   string
	Probes []Probe
	Cflags []string
	// PIDKeys puts the pid of the process counted first in the key of
	// every hash map (see Result.PIDMaps).
	PIDKeys bool
}

// Error is a construct the translator does not handle, or a name the
// kernel lacks, at a line of the config's code:.
type Error struct {
	Config string
	Line   int
	// Construct is the source text at fault.
	Construct string
	Msg       string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("config %q: code: line %d: %s", e.Config, e.Line, e.Msg)
	if e.Construct != "" {
		s += fmt.Sprintf(" (in %q)", e.Construct)
	}
	return s
}

var markers = regexp.MustCompile(`\bBPF_(HASH|ARRAY|HISTOGRAM|PERCPU_HASH|PERCPU_ARRAY|TABLE|PERF_OUTPUT|STACK_TRACE|RINGBUF_OUTPUT)\s*\(|\.\s*(increment|atomic_increment|lookup_or_try_init|lookup_or_init|perf_submit)\s*\(|\bbpf_usdt_readarg|\bTRACEPOINT_PROBE\s*\(|^\s*#\s*include\s*<(linux|uapi|net)/`)

var libbpfMarkers = regexp.MustCompile(`#\s*include\s*[<"](bpf/|vmlinux\.h)|\bSEC\s*\(`)

// IsBCC reports whether code is written in bcc's dialect: it uses bcc's
// map macros or methods, bpf_usdt_readarg, TRACEPOINT_PROBE or kernel
// headers, and none of libbpf's includes or SEC().
func IsBCC(code string) bool {
	if libbpfMarkers.MatchString(code) {
		return false
	}
	for _, l := range strings.Split(code, "\n") {
		if markers.MatchString(l) {
			return true
		}
	}
	return false
}

// mapMacros are the map declarations the translator supports.
var mapMacros = map[string]bool{
	"BPF_HASH": true, "BPF_ARRAY": true, "BPF_HISTOGRAM": true,
	"BPF_PERCPU_HASH": true, "BPF_PERCPU_ARRAY": true,
	"BPF_PERF_OUTPUT": true, "BPF_RINGBUF_OUTPUT": true,
}

// keyedMap reports whether a map macro declares a map with keys (whose
// keys start with the pid where the code selects processes): not arrays,
// perf event arrays or ring buffers.
func keyedMap(macro string) bool {
	return !strings.Contains(macro, "ARRAY") && !strings.HasSuffix(macro, "_OUTPUT")
}

// tableTypes are BPF_TABLE's map types the translator supports.
var tableTypes = map[string]string{
	"hash": "BPF_MAP_TYPE_HASH", "array": "BPF_MAP_TYPE_ARRAY",
	"percpu_hash": "BPF_MAP_TYPE_PERCPU_HASH", "percpu_array": "BPF_MAP_TYPE_PERCPU_ARRAY",
	"lru_hash": "BPF_MAP_TYPE_LRU_HASH", "lru_percpu_hash": "BPF_MAP_TYPE_LRU_PERCPU_HASH",
}

// methods are the map methods the translator supports.
var methods = map[string]bool{
	"lookup": true, "update": true, "insert": true, "delete": true,
	"increment": true, "atomic_increment": true,
	"lookup_or_try_init": true, "lookup_or_init": true,
	"perf_submit": true, "ringbuf_output": true,
	"ringbuf_reserve": true, "ringbuf_submit": true, "ringbuf_discard": true,
}

// unsupportedMacro matches bcc declarations the translator does not do.
var unsupportedMacro = regexp.MustCompile(`^BPF_[A-Z_]+$`)

// edit replaces src[start:end] by text.
type edit struct {
	start, end int
	text       string
}

// fn is a function definition of the code.
type fn struct {
	name       string
	declStart  int // offset of the first token of the definition
	open       int // token index of '(' of the parameters
	close      int // token index of ')'
	body       int // token index of '{'
	bodyEnd    int // token index of '}'
	firstLine  int
	lastLine   int
	tracepoint [2]string
}

// unit is the result of the token pass.
type unit struct {
	header string // libbpf prelude, macros, generated structs
	body   string // the code, line for line
	funcs  []fn
	notes  []string
	// pidMaps are the maps whose keys start with the pid.
	pidMaps []string
}

// sectionOf gives a probe kind's ELF section.
func sectionOf(p Probe) string {
	switch p.Kind {
	case "kprobe", "kretprobe":
		return p.Kind + "/" + p.Target
	case "tracepoint":
		return "tracepoint/" + strings.Replace(p.Target, ":", "/", 1)
	case "raw_tracepoint":
		return "raw_tp/" + p.Target
	case "perf_event":
		return "perf_event"
	case "usdt", "uprobe", "uretprobe":
		return p.Kind
	}
	return ""
}

// entryArgs reports whether bcc gives a probe kind arguments after ctx.
func entryArgs(kind string) bool { return kind == "kprobe" || kind == "uprobe" }

// tokenPass does the first pass over code. Functions in skip are left
// out (their lines kept empty).
func tokenPass(src Source, skip map[string]bool, tracefs string) (*unit, error) {
	code := src.Code
	toks := lex(code)
	fail := func(off int, construct, format string, args ...any) error {
		return &Error{Config: src.Config, Line: lineOf(code, off), Construct: construct, Msg: fmt.Sprintf(format, args...)}
	}
	var edits []edit
	var notes []string
	extra := map[string]bool{}
	var extraOrder []string
	addExtra := func(s string) {
		if !extra[s] {
			extra[s] = true
			extraOrder = append(extraOrder, s)
		}
	}
	usesUSDT := false
	probes := map[string]Probe{}
	for _, p := range src.Probes {
		if p.Kind == "usdt" {
			usesUSDT = true
		}
		if _, ok := probes[p.Func]; !ok {
			probes[p.Func] = p
		}
	}

	// Map names first, so that their method calls are known wherever the
	// declaration is.
	mapsDeclared := map[string]bool{}
	var pidMaps []string
	for i, t := range toks {
		if t.kind != tokIdent || i+2 >= len(toks) || toks[i+1].text != "(" {
			continue
		}
		if mapMacros[t.text] && toks[i+2].kind == tokIdent {
			mapsDeclared[toks[i+2].text] = true
			if src.PIDKeys && keyedMap(t.text) {
				pidMaps = append(pidMaps, toks[i+2].text)
			}
		} else if t.text == "BPF_TABLE" && toks[i+2].kind == tokString {
			// BPF_TABLE("hash", key, leaf, name, size)
			j := matching(toks, i+1)
			args := splitArgs(toks, i+1, j)
			typ, ok := tableTypes[strings.Trim(toks[i+2].text, `"`)]
			if j < 0 || len(args) != 5 || !ok || len(args[3]) != 1 {
				end := toks[i+2].end
				if j > 0 {
					end = toks[j].end
				}
				return nil, fail(t.start, code[t.start:end], "BPF_TABLE: want (\"hash\"|\"array\"|\"percpu_hash\"|\"percpu_array\"|\"lru_hash\"|\"lru_percpu_hash\", key, leaf, name, size)")
			}
			mapsDeclared[args[3][0].text] = true
			macro := "__BCC_TABLE("
			if src.PIDKeys && !strings.Contains(typ, "ARRAY") {
				macro = "__BCC_TABLEK("
				pidMaps = append(pidMaps, args[3][0].text)
			}
			edits = append(edits, edit{t.start, toks[i+2].end, macro + typ})
		} else if unsupportedMacro.MatchString(t.text) && !mapMacros[t.text] && (i == 0 || toks[i-1].text != "#") {
			if j := matching(toks, i+1); j > 0 && (j+1 >= len(toks) || toks[j+1].text == ";") && braceDepthAt(toks, i) == 0 {
				return nil, fail(t.start, code[t.start:toks[j].end], "bcc's %s is not supported by the translator (supported maps: BPF_HASH, BPF_ARRAY, BPF_HISTOGRAM, BPF_PERCPU_HASH, BPF_PERCPU_ARRAY, BPF_TABLE, BPF_PERF_OUTPUT, BPF_RINGBUF_OUTPUT)", t.text)
			}
		}
	}

	var funcs []fn
	depth := 0
	declStart := 0
	newDecl := true
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind == tokDirective {
			if name, ok := includeName(t.text); ok && kernelHeader(name) {
				edits = append(edits, edit{t.start, t.end, "/* " + strings.ReplaceAll(t.text, "*/", "* /") + ": dropped, vmlinux.h has the kernel's types */"})
				notes = append(notes, fmt.Sprintf("line %d: #include <%s> dropped: the kernel's types come from vmlinux.h", lineOf(code, t.start), name))
				if m, ok := headerMacros[name]; ok {
					addExtra(m)
				}
			}
			if depth == 0 {
				newDecl = true
			}
			continue
		}
		if depth == 0 && newDecl {
			declStart, newDecl = t.start, false
		}
		switch {
		case t.kind == tokIdent && (t.text == "bpf_usdt_readarg" || t.text == "bpf_usdt_readarg_p"):
			usesUSDT = true
		case t.kind == tokIdent && mapsDeclared[t.text] && i+3 < len(toks) && toks[i+1].text == "." && toks[i+2].kind == tokIdent && toks[i+3].text == "(":
			m := toks[i+2].text
			if !methods[m] {
				j := matching(toks, i+3)
				end := toks[i+3].end
				if j > 0 {
					end = toks[j].end
				}
				return nil, fail(t.start, code[t.start:end], "map method %s is not supported by the translator (supported: lookup, update, insert, delete, increment, atomic_increment, lookup_or_try_init, perf_submit, ringbuf_output, ringbuf_reserve, ringbuf_submit, ringbuf_discard)", m)
			}
			prefix := "__bcc_"
			if slices.Contains(pidMaps, t.text) {
				prefix = "__bcc_p"
			}
			text := prefix + m + "(" + t.text
			if i+4 < len(toks) && toks[i+4].text != ")" {
				text += ", "
			}
			edits = append(edits, edit{t.start, toks[i+3].end, text})
			i += 2 // the '(' still counts for the depth
			continue
		case t.kind == tokPunct && (t.text == "{" || t.text == "(" || t.text == "["):
			if depth == 0 && t.text == "(" && i > 0 && toks[i-1].kind == tokIdent {
				if j := matching(toks, i); j > 0 && j+1 < len(toks) && toks[j+1].text == "{" {
					f := fn{name: toks[i-1].text, declStart: declStart, open: i, close: j, body: j + 1, bodyEnd: matching(toks, j+1)}
					if f.bodyEnd < 0 {
						return nil, fail(t.start, f.name, "function %s has no end", f.name)
					}
					if f.name == "TRACEPOINT_PROBE" {
						args := splitArgs(toks, i, j)
						if len(args) != 2 || len(args[0]) != 1 || len(args[1]) != 1 || args[0][0].kind != tokIdent || args[1][0].kind != tokIdent {
							return nil, fail(t.start, code[toks[i-1].start:toks[j].end], "TRACEPOINT_PROBE wants (category, event)")
						}
						f.tracepoint = [2]string{args[0][0].text, args[1][0].text}
						f.name = "tracepoint__" + f.tracepoint[0] + "__" + f.tracepoint[1]
					}
					f.firstLine, f.lastLine = lineOf(code, f.declStart), lineOf(code, toks[f.bodyEnd].start)
					funcs = append(funcs, f)
				}
			}
			depth++
		case t.kind == tokPunct && (t.text == "}" || t.text == ")" || t.text == "]"):
			depth--
			if depth == 0 && t.text == "}" {
				newDecl = true
			}
		case t.kind == tokPunct && t.text == ";" && depth == 0:
			newDecl = true
		}
	}

	var structs []string
	for _, f := range funcs {
		if skip[f.name] {
			edits = append(edits, edit{f.declStart, toks[f.bodyEnd].end, ""})
			continue
		}
		p, listed := probes[f.name]
		switch {
		case f.tracepoint[0] != "":
			p = Probe{Kind: "tracepoint", Target: f.tracepoint[0] + ":" + f.tracepoint[1], Func: f.name}
			s, err := tracepointStruct(tracefs, f.tracepoint[0], f.tracepoint[1])
			if err != nil {
				return nil, fail(toks[f.open-1].start, code[toks[f.open-1].start:toks[f.close].end], "%v", err)
			}
			structs = append(structs, s)
			edits = append(edits, edit{toks[f.open-1].start, toks[f.close].end,
				fmt.Sprintf("int %s(struct %s *args)", f.name, f.name)})
		case listed:
		case strings.HasPrefix(f.name, "kprobe__"):
			p = Probe{Kind: "kprobe", Target: strings.TrimPrefix(f.name, "kprobe__"), Func: f.name}
		case strings.HasPrefix(f.name, "kretprobe__"):
			p = Probe{Kind: "kretprobe", Target: strings.TrimPrefix(f.name, "kretprobe__"), Func: f.name}
		default:
			// A helper: bcc inlines those.
			if !hasStatic(code[f.declStart:toks[f.open-1].start]) {
				edits = append(edits, edit{f.declStart, f.declStart, "static __always_inline "})
			}
			continue
		}
		edits = append(edits, edit{f.declStart, f.declStart, fmt.Sprintf("SEC(%q) ", sectionOf(p))})
		if f.tracepoint[0] != "" {
			continue
		}
		args := splitArgs(toks, f.open, f.close)
		if len(args) <= 1 {
			continue
		}
		if !entryArgs(p.Kind) {
			return nil, fail(toks[f.open].start, code[toks[f.open-1].start:toks[f.close].end],
				"function %s is a %s: bcc gives arguments after ctx only to kprobes and uprobes", f.name, p.Kind)
		}
		for _, a := range args {
			if len(a) == 0 {
				return nil, fail(toks[f.open].start, code[toks[f.open-1].start:toks[f.close].end], "function %s has an empty parameter", f.name)
			}
		}
		ctxName := lastIdent(args[0])
		if ctxName == "" {
			return nil, fail(toks[f.open].start, code[toks[f.open-1].start:toks[f.close].end], "function %s: the first parameter must be struct pt_regs *ctx", f.name)
		}
		if len(args)-1 > 5 {
			return nil, fail(toks[f.open].start, code[toks[f.open-1].start:toks[f.close].end], "function %s takes %d arguments after ctx; PT_REGS_PARM gives 5", f.name, len(args)-1)
		}
		var decls strings.Builder
		for n, a := range args[1:] {
			name := lastIdent(a)
			if name == "" || a[len(a)-1].text != name {
				return nil, fail(a[0].start, code[a[0].start:a[len(a)-1].end], "function %s: cannot read parameter", f.name)
			}
			typ := strings.Join(strings.Fields(code[a[0].start:a[len(a)-1].start]), " ")
			fmt.Fprintf(&decls, " %s %s = (%s)PT_REGS_PARM%d(%s);", typ, name, typ, n+1, ctxName)
		}
		edits = append(edits, edit{args[0][len(args[0])-1].end, toks[f.close].start, ""})
		edits = append(edits, edit{toks[f.body].end, toks[f.body].end, decls.String()})
	}

	var h strings.Builder
	fmt.Fprintf(&h, "/* Translated from bcc's dialect by probe_exporter (config %q). */\n", src.Config)
	h.WriteString(pchHeaders)
	if usesUSDT {
		h.WriteString("#include <bpf/usdt.bpf.h>\n")
	}
	for _, c := range src.Cflags {
		if d, ok := strings.CutPrefix(c, "-D"); ok {
			name, val, _ := strings.Cut(d, "=")
			if val == "" {
				val = "1"
			}
			fmt.Fprintf(&h, "#define %s %s\n", name, val)
		}
	}
	if src.PIDKeys {
		h.WriteString("#define __BCC_PID_KEYS 1\n")
	}
	h.WriteString(macros)
	for _, e := range extraOrder {
		h.WriteString(e)
	}
	for _, s := range structs {
		h.WriteString(s)
	}
	h.WriteString("/* The config's code, line for line. */\n")
	body := applyEdits(code, edits)
	if !strings.Contains(code, `SEC("license")`) {
		if !strings.HasSuffix(body, "\n") {
			body += "\n"
		}
		body += "\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n"
	}
	return &unit{header: h.String(), body: body, funcs: funcs, notes: notes, pidMaps: pidMaps}, nil
}

func braceDepthAt(toks []token, i int) int {
	d := 0
	for _, t := range toks[:i] {
		if t.kind != tokPunct {
			continue
		}
		switch t.text {
		case "{":
			d++
		case "}":
			d--
		}
	}
	return d
}

var includeRE = regexp.MustCompile(`^#\s*include\s*<([^>]+)>`)

func includeName(directive string) (string, bool) {
	m := includeRE.FindStringSubmatch(directive)
	if m == nil {
		return "", false
	}
	return m[1], true
}

func hasStatic(s string) bool {
	for _, w := range strings.Fields(s) {
		if w == "static" {
			return true
		}
	}
	return false
}

// splitArgs splits the tokens between toks[open] and toks[close] at
// top-level commas. A lone void is no argument.
func splitArgs(toks []token, open, close int) [][]token {
	var out [][]token
	var cur []token
	depth := 0
	for _, t := range toks[open+1 : close] {
		if t.kind == tokPunct {
			switch t.text {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				depth--
			case ",":
				if depth == 0 {
					out = append(out, cur)
					cur = nil
					continue
				}
			}
		}
		cur = append(cur, t)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	if len(out) == 1 && len(out[0]) == 1 && out[0][0].text == "void" {
		return nil
	}
	return out
}

func lastIdent(ts []token) string {
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].kind == tokIdent {
			return ts[i].text
		}
	}
	return ""
}

// applyEdits applies non-overlapping edits to src, keeping the line count
// of every replaced span.
func applyEdits(src string, edits []edit) string {
	// Insertions go before a replacement starting at the same offset.
	sort.SliceStable(edits, func(i, j int) bool {
		if edits[i].start != edits[j].start {
			return edits[i].start < edits[j].start
		}
		return edits[i].end < edits[j].end
	})
	var b strings.Builder
	pos := 0
	for _, e := range edits {
		if e.start < pos {
			continue
		}
		b.WriteString(src[pos:e.start])
		b.WriteString(e.text)
		b.WriteString(strings.Repeat("\n", strings.Count(src[e.start:e.end], "\n")-strings.Count(e.text, "\n")))
		pos = e.end
	}
	b.WriteString(src[pos:])
	return b.String()
}
