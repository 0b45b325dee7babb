package loader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/probe-exporter/probe_exporter/config"
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

	mu sync.Mutex
}

// NewCompiler returns a compiler caching under dir (a temporary directory
// when empty).
func NewCompiler(dir string) *Compiler {
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "probe_exporter-cc")
	}
	return &Compiler{CacheDir: dir, BTF: "/sys/kernel/btf/vmlinux"}
}

func targetArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86"
	case "arm64":
		return "arm64"
	}
	return runtime.GOARCH
}

// Compile turns cfg.Code into a BPF object.
func (c *Compiler) Compile(ctx context.Context, cfg config.Config) ([]byte, error) {
	clang, err := lookTool(c.Clang, "clang")
	if err != nil {
		return nil, fmt.Errorf("inline code needs clang to compile it: %w (install clang, llvm and libbpf-dev, or ship a prebuilt NAME.bpf.o)", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.MkdirAll(c.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("compiler cache: %w", err)
	}
	hdr, err := c.vmlinuxH(ctx)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(cfg.Code + "\x00" + strings.Join(cfg.Cflags, "\x00") + "\x00" + hdr))
	key := hex.EncodeToString(sum[:8])
	out := filepath.Join(c.CacheDir, key+".bpf.o")
	if data, err := os.ReadFile(out); err == nil {
		return data, nil
	}
	src := filepath.Join(c.CacheDir, key+".bpf.c")
	if err := os.WriteFile(src, []byte(cfg.Code), 0o600); err != nil {
		return nil, fmt.Errorf("writing inline code: %w", err)
	}
	args := []string{"-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_" + targetArch(),
		"-I", filepath.Dir(hdr), "-I", "/usr/include/" + multiarch()}
	args = append(args, cfg.Cflags...)
	args = append(args, "-c", src, "-o", out+".tmp")
	cmd := exec.CommandContext(ctx, clang, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("compiling inline code of %s with clang: %w\n%s", cfg.Name, err, compilerErrors(stderr.String()))
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return nil, fmt.Errorf("compiler cache: %w", err)
	}
	return os.ReadFile(out)
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
	bpftool, err := lookTool(c.Bpftool, "bpftool")
	if err != nil {
		return "", fmt.Errorf("inline code needs bpftool to generate vmlinux.h: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("compiler cache: %w", err)
	}
	cmd := exec.CommandContext(ctx, bpftool, "btf", "dump", "file", c.BTF, "format", "c")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("bpftool btf dump: %w: %s", err, tail(stderr.String(), 5))
	}
	if err := os.WriteFile(hdr+".tmp", data, 0o600); err != nil {
		return "", err
	}
	return hdr, os.Rename(hdr+".tmp", hdr)
}

func lookTool(configured, name string) (string, error) {
	if configured != "" {
		name = configured
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: %w", name, errors.Unwrap(err))
	}
	return p, nil
}

func multiarch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	}
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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
		return tail(out, 20)
	}
	return strings.Join(keep, "\n")
}
