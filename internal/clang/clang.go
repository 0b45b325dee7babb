// Package clang runs the BPF toolchain: bpftool generates vmlinux.h from a
// kernel's BTF, and clang compiles BPF C against it into CO-RE objects. The
// loader compiles the inline code of v1-layout configs with it, and tests
// their BPF programs (internal/testkit).
package clang

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/probe-exporter/probe_exporter/internal/privdir"
)

// Look finds a tool: the configured path or name, else name, in PATH.
func Look(configured, name string) (string, error) {
	if configured != "" {
		name = configured
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if u := errors.Unwrap(err); u != nil {
			err = u
		}
		return "", fmt.Errorf("%s not found: %w", name, err)
	}
	return p, nil
}

// TargetFlags are the flags of clang for the bpf target: the host's
// architecture (which register layout libbpf's bpf_tracing.h reads) and
// the include directories, the given ones first, then the multiarch one
// (asm/types.h of Debian's libc headers).
func TargetFlags(includes ...string) []string {
	return TargetFlagsFor(runtime.GOARCH, includes...)
}

// TargetFlagsFor are TargetFlags for the Go architecture goarch (amd64,
// arm64), for objects compiled on one machine to load on another.
func TargetFlagsFor(goarch string, includes ...string) []string {
	flags := []string{"-target", "bpf", "-D__TARGET_ARCH_" + targetArch(goarch)}
	for _, dir := range includes {
		flags = append(flags, "-I", dir)
	}
	if m := multiarch(goarch); m != "" {
		flags = append(flags, "-I", "/usr/include/"+m)
	}
	return flags
}

// Compile compiles the BPF C at src into the object out with clang:
// optimized (the verifier wants it) and with debug info (the BTF CO-RE
// relocations need), with TargetFlags(includes...) and then cflags. On
// failure the error holds clang's exit, and stderr what it said.
func Compile(ctx context.Context, clang, src, out string, includes, cflags []string) (stderr string, err error) {
	return CompileFor(ctx, runtime.GOARCH, clang, src, out, includes, cflags)
}

// CompileFor is Compile for the Go architecture goarch (TargetFlagsFor).
func CompileFor(ctx context.Context, goarch, clang, src, out string, includes, cflags []string) (stderr string, err error) {
	args := append([]string{"-g", "-O2"}, TargetFlagsFor(goarch, includes...)...)
	args = append(args, cflags...)
	args = append(args, "-c", src, "-o", out)
	cmd := exec.CommandContext(ctx, clang, args...)
	var buf bytes.Buffer
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return buf.String(), fmt.Errorf("clang: %w", err)
	}
	return buf.String(), nil
}

// VmlinuxHeader is the C of the types of the BTF at btfPath (the
// kernel's is /sys/kernel/btf/vmlinux), as bpftool dumps it.
func VmlinuxHeader(ctx context.Context, bpftool, btfPath string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bpftool, "btf", "dump", "file", btfPath, "format", "c")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool btf dump: %w: %s", err, Tail(stderr.String(), 5))
	}
	return data, nil
}

// VmlinuxH writes VmlinuxHeader to hdr, whole or not at all: under a
// fresh name in hdr's directory, made with O_EXCL|O_NOFOLLOW, renamed over
// hdr, so no name found there (a symlink at hdr or at an older temporary
// name) is ever written through. hdr's directory is made 0700 if missing.
func VmlinuxH(ctx context.Context, bpftool, btfPath, hdr string) error {
	data, err := VmlinuxHeader(ctx, bpftool, btfPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(hdr), 0o700); err != nil {
		return err
	}
	return privdir.WriteFile(hdr, data)
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func targetArch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86"
	case "arm64":
		return "arm64"
	}
	return goarch
}

func multiarch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	}
	return ""
}
