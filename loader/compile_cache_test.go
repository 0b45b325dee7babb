package loader

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/privdir"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// nobody is a uid neither root nor the tests' user.
const nobody = 65534

const libbpfGetpid = `#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } calls SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getpid")
int count(void *ctx) { u32 k = 0; u64 *v = bpf_map_lookup_elem(&calls, &k); if (v) __sync_fetch_and_add(v, %d); return 0; }
char LICENSE[] SEC("license") = "GPL";
`

func requireToolchain(t *testing.T) {
	t.Helper()
	testkit.RequireRoot(t)
	for _, tool := range []string{"clang", "bpftool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("compiling needs %s", tool)
		}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("the kernel has no BTF")
	}
}

func getpidConfig(per int) config.Config {
	return config.Config{Name: "getpid", Code: strings.Replace(libbpfGetpid, "%d", string(rune('0'+per)), 1)}
}

// logged collects what a compiler logs.
func logged(c *Compiler) *bytes.Buffer {
	var buf bytes.Buffer
	c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	return &buf
}

// TestCompilerCacheRefused: a cache directory someone else can change is
// refused with privdir.ErrNotPrivate, naming it, and nothing is written
// into it.
func TestCompilerCacheRefused(t *testing.T) {
	testkit.RequireRoot(t)
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, base string) string
		want  string
	}{
		{"writable by all", func(t *testing.T, base string) string {
			d := filepath.Join(base, "cc")
			os.Mkdir(d, 0o700)
			os.Chmod(d, 0o777)
			os.WriteFile(filepath.Join(d, "planted"), nil, 0o600)
			return d
		}, "writable by group or others"},
		{"owned by another user", func(t *testing.T, base string) string {
			d := filepath.Join(base, "cc")
			os.Mkdir(d, 0o700)
			os.Chown(d, nobody, nobody)
			return d
		}, "owned by uid 65534"},
		{"under a directory of another user", func(t *testing.T, base string) string {
			os.Chown(base, nobody, nobody)
			return filepath.Join(base, "cc")
		}, "owned by uid 65534"},
		{"under a directory writable by all", func(t *testing.T, base string) string {
			os.Chmod(base, 0o777)
			return filepath.Join(base, "sub", "cc")
		}, "not sticky"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			dir := c.setup(t, base)
			before := listTree(t, base)
			comp := &Compiler{CacheDir: dir, BTF: "/sys/kernel/btf/vmlinux"}
			_, err := comp.CompileAll(context.Background(), getpidConfig(1))
			if !errors.Is(err, privdir.ErrNotPrivate) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "compiler cache") {
				t.Fatalf("got %v, want a compiler cache error with %q matching privdir.ErrNotPrivate", err, c.want)
			}
			after := listTree(t, base)
			// Make may create what is missing under a directory that is
			// then refused, but never a file.
			for p := range after {
				if _, ok := before[p]; !ok && !strings.HasSuffix(p, "/") {
					t.Errorf("%s written into a refused cache", p)
				}
			}
		})
	}
}

// listTree lists the paths under dir (directories with a trailing /).
func listTree(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			if info.IsDir() {
				p += "/"
			}
			out[p] = true
		}
		return nil
	})
	return out
}

// TestCompilerFallback: a default cache that cannot be made private
// gives way to a fresh private temporary directory, logged; Close
// removes it.
func TestCompilerFallback(t *testing.T) {
	requireToolchain(t)
	bad := filepath.Join(t.TempDir(), "cc")
	os.Mkdir(bad, 0o700)
	os.Chown(bad, nobody, nobody)
	c := &Compiler{CacheDir: bad, Fallback: true, BTF: "/sys/kernel/btf/vmlinux"}
	log := logged(c)
	if _, err := c.CompileAll(context.Background(), getpidConfig(1)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "fresh private temporary directory") || !strings.Contains(log.String(), "owned by uid 65534") {
		t.Errorf("the fallback was not logged with its cause:\n%s", log)
	}
	temp := c.temp
	if fi, err := os.Stat(temp); err != nil || fi.Mode().Perm() != 0o700 || filepath.Dir(temp) != filepath.Clean(os.TempDir()) {
		t.Fatalf("fallback %s: %v %v", temp, fi, err)
	}
	if entries, _ := os.ReadDir(bad); len(entries) != 0 {
		t.Errorf("the refused default holds %v", entries)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(temp); err == nil {
		t.Error("Close left the fallback directory")
	}
}

// TestCompilerRejectsBadEntries: an entry that is not what its key
// promises (another object, altered, without its record, a symlink, not
// root's) is logged, rejected and made again; what is served is the
// object of the code.
func TestCompilerRejectsBadEntries(t *testing.T) {
	requireToolchain(t)
	ctx := context.Background()
	// Another program under the name of ours: what an attacker would
	// plant.
	otherDir := t.TempDir()
	other, err := (&Compiler{CacheDir: otherDir, BTF: "/sys/kernel/btf/vmlinux"}).Compile(ctx, getpidConfig(7))
	if err != nil {
		t.Fatal(err)
	}
	cfg := getpidConfig(1)
	for _, c := range []struct {
		name  string
		alter func(t *testing.T, obj string)
	}{
		{"another object, no record", func(t *testing.T, obj string) {
			os.Remove(obj + ".sum")
			os.WriteFile(obj, other, 0o600)
		}},
		{"another object, the record kept", func(t *testing.T, obj string) { os.WriteFile(obj, other, 0o600) }},
		{"a symlink to another object", func(t *testing.T, obj string) {
			p := filepath.Join(otherDir, "planted.o")
			os.WriteFile(p, other, 0o600)
			os.Remove(obj)
			os.Symlink(p, obj)
		}},
		{"owned by another user", func(t *testing.T, obj string) { os.Chown(obj, nobody, nobody) }},
		{"writable by all", func(t *testing.T, obj string) { os.Chmod(obj, 0o666) }},
		{"vmlinux.h altered", func(t *testing.T, obj string) {
			hdrs, _ := filepath.Glob(filepath.Join(filepath.Dir(obj), "btf-*", "vmlinux.h"))
			os.WriteFile(hdrs[0], []byte("#error planted\n"), 0o600)
			os.Remove(obj + ".sum") // and the object made again with it
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			comp := &Compiler{CacheDir: t.TempDir(), BTF: "/sys/kernel/btf/vmlinux"}
			want, err := comp.Compile(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			objs, _ := filepath.Glob(filepath.Join(comp.CacheDir, "*.bpf.o"))
			if len(objs) != 1 {
				t.Fatalf("objects %v", objs)
			}
			c.alter(t, objs[0])
			log := logged(comp)
			got, err := comp.Compile(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("a bad entry was served")
			}
			if !strings.Contains(log.String(), "rejected") && c.name != "another object, no record" {
				t.Errorf("nothing logged:\n%s", log)
			}
			if data, err := privdir.ReadFile(objs[0], maxObject); err != nil || !bytes.Equal(data, want) {
				t.Errorf("the entry was not made again: %v", err)
			}
		})
	}
}

// TestCompilerReadOnlyCache: a cache filled ahead, root's and read only
// (mode 0555 directories, 0444 files), serves without clang, bpftool or
// a write.
func TestCompilerReadOnlyCache(t *testing.T) {
	requireToolchain(t)
	ctx := context.Background()
	filled := &Compiler{CacheDir: filepath.Join(t.TempDir(), "cc"), BTF: "/sys/kernel/btf/vmlinux"}
	want, err := filled.Compile(ctx, cfg1())
	if err != nil {
		t.Fatal(err)
	}
	filepath.Walk(filled.CacheDir, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			mode := os.FileMode(0o444)
			if info.IsDir() {
				mode = 0o555
			}
			os.Chmod(p, mode)
		}
		return nil
	})
	before := listTree(t, filled.CacheDir)
	ro := &Compiler{Clang: "/nonexistent/clang", Bpftool: "/nonexistent/bpftool", CacheDir: filled.CacheDir, BTF: "/sys/kernel/btf/vmlinux"}
	log := logged(ro)
	got, err := ro.Compile(ctx, cfg1())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the read-only cache did not serve: %v", err)
	}
	if after := listTree(t, filled.CacheDir); len(after) != len(before) {
		t.Errorf("the read-only cache changed: %d paths, then %d", len(before), len(after))
	}
	if log.Len() != 0 {
		t.Errorf("logged:\n%s", log)
	}
}

func cfg1() config.Config { return getpidConfig(1) }
