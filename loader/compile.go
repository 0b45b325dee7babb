package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/probe-exporter/probe_exporter/config"
	toolchain "github.com/probe-exporter/probe_exporter/internal/clang"
	"github.com/probe-exporter/probe_exporter/internal/privdir"
)

// DefaultCacheDir is the compiler cache when none is configured: a
// directory of root's, made 0700 and checked to be private (internal/privdir).
const DefaultCacheDir = "/var/cache/probe_exporter"

// maxObject bounds what is read back from the cache as an object.
const maxObject = 256 << 20

// Compiler compiles the inline libbpf-style C of v1-layout configs with
// clang against a vmlinux.h generated from the running kernel's BTF.
//
// What it keeps (vmlinux.h, bcc translations, objects) lives in a private
// directory: it and every directory above it owned by root (or the
// effective user) and writable by no one else, sticky root directories
// such as /tmp excepted above it. Entries are written under fresh names
// and renamed in, and read back only when regular, root's, and matching a
// record of their key and digest (privdir.ReadEntry); anything else is
// logged, rejected and made again.
type Compiler struct {
	// Clang and Bpftool are the programs to run; found in PATH when empty.
	Clang, Bpftool string
	// CacheDir holds vmlinux.h and compiled objects keyed by content. A
	// directory that is not private is refused (privdir.ErrNotPrivate),
	// failing the configs with inline code.
	CacheDir string
	// Fallback, for the default CacheDir: if it cannot be made private, a
	// fresh private temporary directory serves instead, and it is logged.
	Fallback bool
	// BTF is the kernel BTF to generate vmlinux.h from.
	BTF string
	// Logger gets the C translated from bcc's dialect (at debug level, or
	// info with ShowTranslated), the cache's fallback and the entries it
	// rejects.
	Logger         *slog.Logger
	ShowTranslated bool

	mu   sync.Mutex
	temp string // the fallback directory, once made
}

// NewCompiler returns a compiler caching under dir, or DefaultCacheDir
// (with the fallback) when dir is empty. The cache may be read only: what
// it has is used without clang or bpftool.
func NewCompiler(dir string) *Compiler {
	c := &Compiler{CacheDir: dir, BTF: "/sys/kernel/btf/vmlinux"}
	if dir == "" {
		c.CacheDir, c.Fallback = DefaultCacheDir, true
	}
	return c
}

// Run holds the compiler for the daemon's lifetime; Close, after it,
// removes the fallback directory.
func (c *Compiler) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close removes the fallback temporary directory, if one was made.
func (c *Compiler) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.temp == "" {
		return nil
	}
	err := os.RemoveAll(c.temp)
	c.temp = ""
	return err
}

// dir is the cache directory to use now, checked to be private. The
// check runs at each compile: a directory fixed by hand serves at the
// next reload, one opened to others meanwhile stops serving.
func (c *Compiler) dir() (string, error) {
	if c.temp != "" {
		return privdir.Check(c.temp)
	}
	dir, err := privdir.Make(c.CacheDir)
	if err == nil {
		return dir, nil
	}
	err = fmt.Errorf("compiler cache %s: %w", c.CacheDir, err)
	if !c.Fallback {
		return "", err
	}
	temp, terr := privdir.Temp("probe_exporter-cc-")
	if terr != nil {
		return "", fmt.Errorf("%w; no private temporary directory either: %w", err, terr)
	}
	c.temp = temp
	c.log(slog.LevelWarn, "the default compiler cache cannot be used; a fresh private temporary directory serves until exit (compiles are not kept across restarts: set --compiler.cache-dir to a private directory)", "err", err, "dir", temp)
	return temp, nil
}

func (c *Compiler) log(level slog.Level, msg string, args ...any) {
	if c.Logger != nil {
		c.Logger.Log(context.Background(), level, msg, args...)
	}
}

// rejected logs an entry that was there but could not be used; a missing
// one is an ordinary miss.
func (c *Compiler) rejected(path string, err error) {
	if !errors.Is(err, fs.ErrNotExist) {
		c.log(slog.LevelWarn, "compiler cache entry rejected; making it again", "file", path, "err", err)
	}
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
	dir, err := c.dir()
	if err != nil {
		return nil, nil, nil, err
	}
	hdr, err := c.vmlinuxH(ctx, dir)
	if err != nil {
		return nil, nil, nil, err
	}
	code, dropped, pidMaps, err := c.translateBCC(ctx, dir, hdr, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	// Keyed by the kernel's BTF (the name of vmlinux.h's directory), not by
	// where the cache is: a cache filled elsewhere for this kernel serves,
	// one filled for another kernel never does.
	sum := sha256.Sum256([]byte(code + "\x00" + strings.Join(cfg.Cflags, "\x00") + "\x00" + btfID(hdr)))
	key := hex.EncodeToString(sum[:])
	out := filepath.Join(dir, key[:16]+".bpf.o")
	data, err := privdir.ReadEntry(out, key, maxObject)
	if err == nil {
		return data, dropped, pidMaps, nil
	}
	c.rejected(out, err)
	clang, err := c.clang()
	if err != nil {
		return nil, nil, nil, err
	}
	// Built in a fresh directory of its own inside the cache, then moved
	// in with its record.
	build, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("compiler cache: %w", err)
	}
	defer os.RemoveAll(build)
	src := filepath.Join(build, key[:16]+".bpf.c")
	if err := os.WriteFile(src, []byte(code), 0o600); err != nil {
		return nil, nil, nil, fmt.Errorf("writing inline code: %w", err)
	}
	obj := filepath.Join(build, key[:16]+".bpf.o")
	// The build directory's random name is kept out of the debug info:
	// the same code makes the same object.
	cflags := append(append([]string{}, cfg.Cflags...), "-fdebug-prefix-map="+build+"=inline")
	if stderr, err := toolchain.Compile(ctx, clang, src, obj, []string{filepath.Dir(hdr)}, cflags); err != nil {
		return nil, nil, nil, fmt.Errorf("compiling inline code of %s with clang: %w\n%s", cfg.Name, err, compilerErrors(stderr))
	}
	data, err = privdir.ReadFile(obj, maxObject)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("compiler cache: %w", err)
	}
	if err := privdir.WriteEntry(out, key, data); err != nil {
		return nil, nil, nil, fmt.Errorf("compiler cache: %w", err)
	}
	return data, dropped, pidMaps, nil
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

// vmlinuxH generates vmlinux.h once per kernel BTF, in dir, and returns
// its path.
func (c *Compiler) vmlinuxH(ctx context.Context, dir string) (string, error) {
	btf, err := os.ReadFile(c.BTF)
	if err != nil {
		return "", fmt.Errorf("inline code needs the kernel's BTF: %w", err)
	}
	sum := sha256.Sum256(btf)
	key := hex.EncodeToString(sum[:])
	bdir := filepath.Join(dir, "btf-"+key[:16])
	hdr := filepath.Join(bdir, "vmlinux.h")
	// The BTF's directory is checked as the cache is: clang reads what is
	// in it by path.
	if _, err := privdir.Check(bdir); err == nil {
		err = privdir.VerifyEntry(hdr, key)
		if err == nil {
			return hdr, nil
		}
		c.rejected(hdr, err)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("compiler cache: %w", err)
	}
	bpftool, err := toolchain.Look(c.Bpftool, "bpftool")
	if err != nil {
		return "", fmt.Errorf("inline code needs bpftool to generate vmlinux.h: %w", err)
	}
	data, err := toolchain.VmlinuxHeader(ctx, bpftool, c.BTF)
	if err != nil {
		return "", fmt.Errorf("generating vmlinux.h: %w", err)
	}
	if _, err := privdir.Make(bdir); err != nil {
		return "", fmt.Errorf("compiler cache: %w", err)
	}
	if err := privdir.WriteEntry(hdr, key, data); err != nil {
		return "", fmt.Errorf("compiler cache: %w", err)
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
