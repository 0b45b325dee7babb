package bcc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/probe-exporter/probe_exporter/internal/privdir"
)

// Translator runs the translation. Clang is used for the AST pass.
type Translator struct {
	// Clang is the clang binary.
	Clang string
	// Args are the target flags and include directories of the compile
	// (-target bpf, -D__TARGET_ARCH_x86, -I with vmlinux.h's directory).
	Args []string
	// PCH is the path of the precompiled prelude (vmlinux.h and libbpf's
	// headers), built on first use; it must sit next to vmlinux.h's BTF,
	// in a private directory (internal/privdir), where the AST pass keeps
	// its files too.
	PCH string
	// TraceFS is where tracepoint formats are read (/sys/kernel/tracing).
	TraceFS string
}

// Result is a translated program.
type Result struct {
	// Code is the libbpf-style C.
	Code string
	// Dropped lists functions left out, each with the reason (a field or
	// type the kernel lacks); the config's other programs still load.
	Dropped map[string]error
	// Notes say what was done beyond the plain rewrite (dropped includes).
	Notes []string
	// PIDMaps are the maps whose keys start with the pid (a u32, padded
	// to the alignment of the code's key), with Source.PIDKeys.
	PIDMaps []string
}

// Translate turns src into libbpf-style C. A construct it does not handle
// fails the whole config with an *Error; a function the running kernel
// cannot compile (a field it lacks) is left out and listed in Dropped.
func (t *Translator) Translate(ctx context.Context, src Source) (*Result, error) {
	if err := t.ensurePCH(ctx); err != nil {
		return nil, err
	}
	tracefs := t.TraceFS
	if tracefs == "" {
		tracefs = "/sys/kernel/tracing"
	}
	dropped := map[string]error{}
	skip := map[string]bool{}
	for round := 0; ; round++ {
		u, err := tokenPass(src, skip, tracefs)
		if err != nil {
			return nil, err
		}
		full := u.header + u.body
		root, diags, err := t.dump(ctx, full)
		if err == nil && round == 0 && stalePCH(diags) {
			// Built by another clang: build it again.
			os.Remove(t.PCH + ".sum")
			if err := t.ensurePCH(ctx); err != nil {
				return nil, err
			}
			root, diags, err = t.dump(ctx, full)
		}
		if err != nil {
			return nil, err
		}
		hdrLines := strings.Count(u.header, "\n")
		var errs []diag
		for _, d := range diags {
			if d.severity == "error" {
				errs = append(errs, d)
			}
		}
		if len(errs) == 0 {
			body := rewriteReads(root, full, len(u.header))
			if len(dropped) > 0 && !anyProbeLeft(u, src, skip) {
				return nil, joinDropped(dropped)
			}
			// Diagnostics of the compile then name lines of code:.
			return &Result{Code: u.header + "#line 1 \"code\"\n" + body, Dropped: dropped, Notes: u.notes, PIDMaps: u.pidMaps}, nil
		}
		progress := false
		for _, d := range errs {
			line := d.line - hdrLines
			e := explain(src, line, d.msg)
			if line < 1 {
				return nil, fmt.Errorf("config %q: the translated prelude does not compile: %s", src.Config, d.msg)
			}
			f := funcAt(u.funcs, line)
			if f == "" {
				return nil, e
			}
			if !skip[f] {
				skip[f] = true
				dropped[f] = e
				progress = true
			}
		}
		if !progress || round > len(u.funcs) {
			return nil, explain(src, errs[0].line-hdrLines, errs[0].msg)
		}
	}
}

// stalePCH reports whether clang refused the precompiled prelude.
func stalePCH(diags []diag) bool {
	for _, d := range diags {
		if d.line == 0 && (strings.Contains(d.msg, "precompiled") || strings.Contains(d.msg, "PCH") || strings.Contains(d.msg, "AST file")) {
			return true
		}
	}
	return false
}

func anyProbeLeft(u *unit, src Source, skip map[string]bool) bool {
	listed := map[string]bool{}
	for _, p := range src.Probes {
		listed[p.Func] = true
	}
	for _, f := range u.funcs {
		if !skip[f.name] && (listed[f.name] || f.tracepoint[0] != "" || strings.HasPrefix(f.name, "kprobe__") || strings.HasPrefix(f.name, "kretprobe__")) {
			return true
		}
	}
	return false
}

func joinDropped(d map[string]error) error {
	names := make([]string, 0, len(d))
	for n := range d {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		errs = append(errs, fmt.Errorf("function %s: %w", n, d[n]))
	}
	return errors.Join(errs...)
}

func funcAt(fs []fn, line int) string {
	for _, f := range fs {
		if line >= f.firstLine && line <= f.lastLine {
			return f.name
		}
	}
	return ""
}

var (
	noMemberRE   = regexp.MustCompile(`no member named '([^']+)' in '(?:struct|union) ([^']+)'`)
	undeclaredRE = regexp.MustCompile(`use of undeclared identifier '([^']+)'|implicit declaration of function '([^']+)'|unknown type name '([^']+)'`)
	incompleteRE = regexp.MustCompile(`(?:incomplete|undefined) (?:definition of )?type '(?:struct|union) ([^']+)'`)
)

// explain turns a clang diagnostic at a line of code: into an Error that
// names what the kernel lacks, when that is the cause.
func explain(src Source, line int, msg string) error {
	construct := ""
	lines := strings.Split(src.Code, "\n")
	if line >= 1 && line <= len(lines) {
		construct = strings.TrimSpace(lines[line-1])
	}
	e := &Error{Config: src.Config, Line: line, Construct: construct, Msg: msg}
	if m := noMemberRE.FindStringSubmatch(msg); m != nil && !declaresStruct(src.Code, m[2]) {
		e.Msg = fmt.Sprintf("the running kernel's struct %s has no field %s", m[2], m[1])
	} else if m := incompleteRE.FindStringSubmatch(msg); m != nil && !declaresStruct(src.Code, m[1]) {
		e.Msg = fmt.Sprintf("the running kernel has no struct %s", m[1])
	} else if m := undeclaredRE.FindStringSubmatch(msg); m != nil {
		name := m[1] + m[2] + m[3]
		e.Msg = fmt.Sprintf("%s is not defined: the running kernel's BTF (vmlinux.h: types and enums, no macros) has no %s; define it with cflags: -D%s=... if it is a macro of a kernel header", name, name, name)
	}
	return e
}

func declaresStruct(code, name string) bool {
	return regexp.MustCompile(`\b(struct|union)\s+` + regexp.QuoteMeta(name) + `\s*\{`).MatchString(code)
}

// diag is one clang diagnostic on the main file.
type diag struct {
	line     int
	severity string
	msg      string
}

var bareDiagRE = regexp.MustCompile(`^(?:fatal )?error: (.*)$`)

var diagRE = regexp.MustCompile(`^([^:\n]+):(\d+):(\d+): (error|warning|fatal error): (.*)$`)

// dump runs clang's AST dump of code with the precompiled prelude.
func (t *Translator) dump(ctx context.Context, code string) (*node, []diag, error) {
	dir, err := os.MkdirTemp(filepath.Dir(t.PCH), ".ast-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "prog.c")
	if err := os.WriteFile(file, []byte(code), 0o600); err != nil {
		return nil, nil, err
	}
	args := append(append([]string{}, t.Args...), "-include-pch", t.PCH, "-fsyntax-only", "-ferror-limit=50",
		"-Xclang", "-ast-dump=json", file)
	cmd := exec.CommandContext(ctx, t.Clang, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var diags []diag
	for _, l := range strings.Split(stderr.String(), "\n") {
		if m := bareDiagRE.FindStringSubmatch(l); m != nil {
			diags = append(diags, diag{line: 0, severity: "error", msg: m[1]})
			continue
		}
		m := diagRE.FindStringSubmatch(l)
		if m == nil || m[1] != file {
			if m != nil && (m[4] == "error" || m[4] == "fatal error") {
				diags = append(diags, diag{line: 0, severity: "error", msg: m[5]})
			}
			continue
		}
		n, _ := strconv.Atoi(m[2])
		sev := m[4]
		if sev == "fatal error" {
			sev = "error"
		}
		diags = append(diags, diag{line: n, severity: sev, msg: m[5]})
	}
	if runErr != nil && len(diags) == 0 {
		return nil, nil, fmt.Errorf("clang AST dump: %w: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	if runErr != nil {
		return nil, diags, nil
	}
	var root node
	if err := json.Unmarshal(stdout.Bytes(), &root); err != nil {
		return nil, nil, fmt.Errorf("reading clang's AST: %w", err)
	}
	fill(&root, &locState{main: file})
	return &root, diags, nil
}

// ensurePCH precompiles the prelude headers once. The header is written
// beside the PCH (clang checks it when loading the PCH) only when missing
// or different, and the PCH is built in a fresh directory and moved in
// with a record of what it was made from (privdir.PublishEntry); one that
// does not match its record is built again.
func (t *Translator) ensurePCH(ctx context.Context) error {
	key := t.pchKey()
	hdr := strings.TrimSuffix(t.PCH, ".pch")
	if have, err := privdir.ReadFile(hdr, int64(len(pchHeaders))+1); err != nil || string(have) != pchHeaders {
		if err := privdir.WriteFile(hdr, []byte(pchHeaders)); err != nil {
			return fmt.Errorf("bcc prelude: %w", err)
		}
	} else if privdir.VerifyEntry(t.PCH, key) == nil {
		return nil
	}
	build, err := os.MkdirTemp(filepath.Dir(t.PCH), ".pch-")
	if err != nil {
		return fmt.Errorf("bcc prelude: %w", err)
	}
	defer os.RemoveAll(build)
	out := filepath.Join(build, filepath.Base(t.PCH))
	args := append(append([]string{}, t.Args...), "-x", "c-header", hdr, "-o", out)
	if b, err := exec.CommandContext(ctx, t.Clang, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("precompiling the bcc prelude: %w: %s", err, tailLines(string(b), 10))
	}
	if err := privdir.PublishEntry(out, t.PCH, key); err != nil {
		return fmt.Errorf("bcc prelude: %w", err)
	}
	return nil
}

// pchKey is what the PCH is made from: the prelude, the clang and its
// arguments.
func (t *Translator) pchKey() string {
	sum := sha256.Sum256([]byte(pchHeaders + "\x00" + t.Clang + "\x00" + strings.Join(t.Args, "\x00")))
	return hex.EncodeToString(sum[:])
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// node is the part of clang's JSON AST the translator reads.
type node struct {
	ID    string  `json:"id"`
	Kind  string  `json:"kind"`
	Name  string  `json:"name"`
	Loc   *srcLoc `json:"loc"`
	Range *struct {
		Begin srcLoc `json:"begin"`
		End   srcLoc `json:"end"`
	} `json:"range"`
	Type *struct {
		QualType string `json:"qualType"`
	} `json:"type"`
	IsArrow              bool   `json:"isArrow"`
	CastKind             string `json:"castKind"`
	Opcode               string `json:"opcode"`
	ReferencedMemberDecl string `json:"referencedMemberDecl"`
	ReferencedDecl       *struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	} `json:"referencedDecl"`
	Inner []*node `json:"inner"`
}

type bareLoc struct {
	Offset              *int   `json:"offset"`
	File                string `json:"file"`
	TokLen              int    `json:"tokLen"`
	IsMacroArgExpansion bool   `json:"isMacroArgExpansion"`
	// inMain is set by fill for locations in the translated file.
	inMain bool
}

type srcLoc struct {
	bareLoc
	Spelling  *bareLoc `json:"spellingLoc"`
	Expansion *bareLoc `json:"expansionLoc"`
}

// locState follows clang's JSON, which names a location's file only when
// it differs from the previous location printed.
type locState struct {
	main string
	cur  string
}

func (s *locState) bare(l *bareLoc) {
	if l == nil || l.Offset == nil {
		return
	}
	if l.File != "" {
		s.cur = l.File
	}
	l.File = s.cur
	l.inMain = s.cur == s.main
}

func (s *locState) loc(l *srcLoc) {
	if l == nil {
		return
	}
	if l.Spelling != nil || l.Expansion != nil {
		s.bare(l.Spelling)
		s.bare(l.Expansion)
		return
	}
	s.bare(&l.bareLoc)
}

// fill resolves every location's file, in the order clang printed them.
func fill(n *node, s *locState) {
	s.loc(n.Loc)
	if n.Range != nil {
		s.loc(&n.Range.Begin)
		s.loc(&n.Range.End)
	}
	for _, c := range n.Inner {
		fill(c, s)
	}
}

// textOffset is where a location is written in the main file: the
// location itself, or for a macro argument the argument's spelling. It
// fails for locations inside a macro's body.
func textOffset(l srcLoc) (int, int, bool) {
	b := l.bareLoc
	if l.Expansion != nil {
		if !l.Expansion.IsMacroArgExpansion || l.Spelling == nil {
			return 0, 0, false
		}
		b = *l.Spelling
	}
	if b.Offset == nil || !b.inMain {
		return 0, 0, false
	}
	return *b.Offset, b.TokLen, true
}
