package loader

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// libDirs are searched for shared libraries named without a path, as
// libbpf does for SEC("uprobe/libc.so.6:malloc").
func libDirs() []string {
	arch := "x86_64-linux-gnu"
	if runtime.GOARCH == "arm64" {
		arch = "aarch64-linux-gnu"
	}
	return []string{"/lib/" + arch, "/usr/lib/" + arch, "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"}
}

// ResolveBinary finds the file a uprobe or USDT section names: an absolute
// path as is, a relative path ("bin/app", "./app") from the working
// directory, a shared library ("libc.so.6") in the library directories, a
// program ("python3") in PATH. root prefixes every path (a process's
// /proc/PID/root), "" for the host.
func ResolveBinary(name, root string) (string, error) {
	if filepath.IsAbs(name) {
		p := filepath.Join(root, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("binary %s: %w", name, err)
		}
		return p, nil
	}
	if strings.Contains(name, "/") {
		// A relative path, used as is as libbpf does: relative to the
		// exporter's working directory, never searched for in PATH.
		if root != "" {
			return "", fmt.Errorf("binary %s: a relative path cannot be resolved inside a process's root; name it by its absolute path", name)
		}
		p, err := filepath.Abs(name)
		if err != nil {
			return "", fmt.Errorf("binary %s: %w", name, err)
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("binary %s (relative to the working directory): %w", name, err)
		}
		return p, nil
	}
	if strings.Contains(name, ".so") {
		for _, dir := range libDirs() {
			p := filepath.Join(root, dir, name)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		return "", fmt.Errorf("shared library %q not found in %s", name, strings.Join(libDirs(), ", "))
	}
	if root == "" {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("binary %q not found in PATH", name)
		}
		return p, nil
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(root, dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("binary %q not found in %s's PATH directories", name, root)
}
