package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/probe-exporter/probe_exporter/config"
	toolchain "github.com/probe-exporter/probe_exporter/internal/clang"
)

// Compiler compiles the inline libbpf-style C of v1-layout configs with
// clang against a vmlinux.h generated from the running kernel's BTF.
type Compiler struct {
	// Clang and Bpftool are the programs to run; found in PATH when empty.
	Clang, Bpftool string
	// CacheDir holds vmlinux.h and compiled objects keyed by content.
	CacheDir string
	// BTF is the kernel BTF to generate vmlinux.h from.
	BTF string
	// Logger gets the C translated from bcc's dialect (at debug level, or
	// info with ShowTranslated).
	Logger         *slog.Logger
	ShowTranslated bool

	mu sync.Mutex
}

// NewCompiler returns a compiler caching under dir (a temporary directory
// when empty). The cache may be read only: what it has is used without
// clang or bpftool.
func NewCompiler(dir string) *Compiler {
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "probe_exporter-cc")
	}
	return &Compiler{CacheDir: dir, BTF: "/sys/kernel/btf/vmlinux"}
}

// Compiled is an object compiled from inline code.
type Compiled struct {
	Object []byte
	// Dropped are the functions of code in bcc's dialect left out, each
	// with its reason (a field the kernel lacks).
	Dropped map[string]error
	// PIDMaps are the maps of bcc code whose keys start with the pid.
	PIDMaps []string
}

// Compile turns cfg.Code into a BPF object.
func (c *Compiler) Compile(ctx context.Context, cfg config.Config) ([]byte, error) {
	r, err := c.CompileAll(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return r.Object, nil
}

// CompileAll is Compile with what the translation of bcc code adds.
func (c *Compiler) CompileAll(ctx context.Context, cfg config.Config) (*Compiled, error) {
	obj, dropped, pidMaps, err := c.compile(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Compiled{Object: obj, Dropped: dropped, PIDMaps: pidMaps}, nil
}

func (c *Compiler) compile(ctx context.Context, cfg config.Config) ([]byte, map[string]error, []string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.MkdirAll(c.CacheDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("compiler cache: %w", err)
	}
	hdr, err := c.vmlinuxH(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	code, dropped, pidMaps, err := c.translateBCC(ctx, hdr, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	// Keyed by the kernel's BTF (the name of vmlinux.h's directory), not by
	// where the cache is: a cache filled elsewhere for this kernel serves,
	// one filled for another kernel never does.
	sum := sha256.Sum256([]byte(code + "\x00" + strings.Join(cfg.Cflags, "\x00") + "\x00" + btfID(hdr)))
	key := hex.EncodeToString(sum[:8])
	out := filepath.Join(c.CacheDir, key+".bpf.o")
	if data, err := os.ReadFile(out); err == nil {
		return data, dropped, pidMaps, nil
	}
	clang, err := c.clang()
	if err != nil {
		return nil, nil, nil, err
	}
	src := filepath.Join(c.CacheDir, key+".bpf.c")
	if err := os.WriteFile(src, []byte(code), 0o600); err != nil {
		return nil, nil, nil, fmt.Errorf("writing inline code: %w", err)
	}
	if stderr, err := toolchain.Compile(ctx, clang, src, out+".tmp", []string{filepath.Dir(hdr)}, cfg.Cflags); err != nil {
		return nil, nil, nil, fmt.Errorf("compiling inline code of %s with clang: %w\n%s", cfg.Name, err, compilerErrors(stderr))
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return nil, nil, nil, fmt.Errorf("compiler cache: %w", err)
	}
	data, err := os.ReadFile(out)
	return data, dropped, pidMaps, err
}

// clang finds clang, needed only for what the cache lacks.
func (c *Compiler) clang() (string, error) {
	clang, err := toolchain.Look(c.Clang, "clang")
	if err != nil {
		return "", fmt.Errorf("inline code needs clang to compile it: %w (install clang, llvm and libbpf-dev, ship a prebuilt NAME.bpf.o, or fill a --compiler.cache-dir for this kernel where clang is)", err)
	}
	return clang, nil
}

// btfID is the identity of the kernel BTF vmlinux.h at hdr came from.
func btfID(hdr string) string {
	return filepath.Base(filepath.Dir(hdr))
}

// vmlinuxH generates vmlinux.h once per kernel BTF and returns its path.
func (c *Compiler) vmlinuxH(ctx context.Context) (string, error) {
	btf, err := os.ReadFile(c.BTF)
	if err != nil {
		return "", fmt.Errorf("inline code needs the kernel's BTF: %w", err)
	}
	sum := sha256.Sum256(btf)
	dir := filepath.Join(c.CacheDir, "btf-"+hex.EncodeToString(sum[:8]))
	hdr := filepath.Join(dir, "vmlinux.h")
	if _, err := os.Stat(hdr); err == nil {
		return hdr, nil
	}
	bpftool, err := toolchain.Look(c.Bpftool, "bpftool")
	if err != nil {
		return "", fmt.Errorf("inline code needs bpftool to generate vmlinux.h: %w", err)
	}
	if err := toolchain.VmlinuxH(ctx, bpftool, c.BTF, hdr); err != nil {
		return "", fmt.Errorf("generating vmlinux.h: %w", err)
	}
	return hdr, nil
}

// compilerErrors keeps the lines of clang's output that say what is wrong
// (errors and the source lines after them), not its crash stack dumps.
func compilerErrors(out string) string {
	var keep []string
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, "error") || strings.Contains(l, "Error at line") {
			keep = append(keep, l)
			for j := i + 1; j < len(lines) && j <= i+2 && !strings.Contains(lines[j], "error"); j++ {
				keep = append(keep, lines[j])
			}
		}
		if len(keep) >= 20 {
			break
		}
	}
	if len(keep) == 0 {
		return toolchain.Tail(out, 20)
	}
	return strings.Join(keep, "\n")
}
