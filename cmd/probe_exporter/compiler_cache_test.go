package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/clang"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// ccCode counts getppid calls by command, adding per at each: 1 in the
// config, 1000 in the object an attacker plants, so loading the planted
// one shows in the counts.
const ccCode = `#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct cc_key { char comm[16]; };
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct cc_key);
	__type(value, u64);
} calls SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getppid")
int count(void *ctx) {
	struct cc_key k = {};
	bpf_get_current_comm(&k.comm, sizeof(k.comm));
	u64 first = %[1]d, *v = bpf_map_lookup_elem(&calls, &k);
	if (v) __sync_fetch_and_add(v, %[1]d);
	else bpf_map_update_elem(&calls, &k, &first, BPF_NOEXIST);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
`

// ccConfig is a v1-layout config with ccCode inline.
func ccConfig(code string) string {
	var b strings.Builder
	b.WriteString(`programs:
  - name: ccatk
    metrics:
      counters:
        - name: ccatk_getppid_total
          help: getppid calls by command
          table: calls
          labels:
            - name: comm
              size: 16
              decoders:
                - name: string
    tracepoints:
      syscalls:sys_enter_getppid: count
    code: |
`)
	for _, l := range strings.SplitAfter(code, "\n") {
		if l != "" {
			b.WriteString("      " + l)
		}
	}
	return b.String()
}

// oldCacheNames are the names the compiler cache used (and still uses,
// in its own directory) for code on this kernel: the BTF's directory and
// the object's key, computable by anyone from the config and the
// world-readable kernel BTF.
func oldCacheNames(t *testing.T, code string) (btfDir, key string) {
	t.Helper()
	btf, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Skipf("the kernel has no BTF: %v", err)
	}
	sum := sha256.Sum256(btf)
	btfDir = "btf-" + hex.EncodeToString(sum[:8])
	k := sha256.Sum256([]byte(code + "\x00" + "" + "\x00" + btfDir))
	return btfDir, hex.EncodeToString(k[:8])
}

// entryState is what a path under a directory is: type, mode, owner,
// size, content digest or link target.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		unix.Lstat(p, &st)
		s := fmt.Sprintf("%v uid=%d size=%d mtime=%d.%d", fi.Mode(), st.Uid, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			s += " -> " + target
		} else if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			s += fmt.Sprintf(" sha256=%x", sha256.Sum256(b))
		}
		out[p] = s
		return nil
	})
	return out
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, s := range after {
		if before[p] != s {
			t.Errorf("%s: %s changed: %q, was %q", what, p, s, before[p])
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s: %s removed", what, p)
		}
	}
}

// sharedTmp is a directory like /tmp (root's, mode 1777) for the
// exporter's TMPDIR, so the attack does not meet other runs' /tmp
// entries.
func sharedTmp(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pe-tmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildObject compiles code into a BPF object, as an attacker would.
func buildObject(t *testing.T, code string) []byte {
	t.Helper()
	bpftool, err := clang.Look("", "bpftool")
	if err != nil {
		t.Skip(err)
	}
	cc, err := clang.Look("", "clang")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	if err := clang.VmlinuxH(ctx, bpftool, "/sys/kernel/btf/vmlinux", filepath.Join(dir, "vmlinux.h")); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "p.bpf.c")
	os.WriteFile(src, []byte(code), 0o600)
	if stderr, err := clang.Compile(ctx, cc, src, filepath.Join(dir, "p.bpf.o"), []string{dir}, nil); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, "p.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countOf waits for comm's getppid count and returns its line.
func countOf(t *testing.T, addr, comm string) string {
	t.Helper()
	prefix := `probe_exporter_ccatk_getppid_total{comm="` + comm + `"} `
	var line string
	testkit.Eventually(t, "the count of "+comm, func() bool {
		if l := series(t, addr, prefix); len(l) > 0 {
			line = l[0]
			return true
		}
		return false
	})
	return line
}

// noLeak checks what every attack test asserts of the exporter's outputs.
func noLeak(t *testing.T, p *proc, addr, marker string) {
	t.Helper()
	_, metrics := get(t, "http://"+addr+"/metrics")
	_, landing := get(t, "http://"+addr+"/")
	testkit.NotContains(t, marker, map[string]string{"metrics": metrics, "landing page": landing, "log": p.Log()})
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("the exporter panicked:\n%s", tail(p.Log(), 40))
	}
}

// TestCompilerCacheAttack: an unprivileged user makes the compiler cache
// directory older versions used ($TMPDIR/probe_exporter-cc) first, mode
// 0777, with symlinks to a root-only file at every name they wrote (which
// made root overwrite it with vmlinux.h) and a BPF object of its own under
// the key the config's code has (which root loaded). The exporter, with
// default flags, uses neither: the secret file is unchanged, nothing in
// the attacker's directory is written, and the config counts exactly.
func TestCompilerCacheAttack(t *testing.T) {
	needClang(t)
	code := fmt.Sprintf(ccCode, 1)
	btfDir, key := oldCacheNames(t, code)
	evil := buildObject(t, fmt.Sprintf(ccCode, 1000))
	a := testkit.NewAttacker(t)
	secret, marker := testkit.Secret(t)
	secretBefore, _ := os.ReadFile(secret)
	tmp := sharedTmp(t)

	cc := filepath.Join(tmp, "probe_exporter-cc")
	a.Run(t, fmt.Sprintf(`set -e
mkdir -m 0777 %[1]s %[1]s/%[2]s
chmod 0777 %[1]s %[1]s/%[2]s
for n in vmlinux.h.tmp bcc-prelude.h bcc-prelude.h.pch.tmp; do ln -s %[3]s %[1]s/%[2]s/$n; done
for n in %[4]s.bpf.c %[4]s.bpf.o.tmp; do ln -s %[3]s %[1]s/$n; done`, cc, btfDir, secret, key))
	a.WriteFile(t, filepath.Join(cc, key+".bpf.o"), evil, 0o644)
	before := treeState(t, cc)

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ccatk.yaml"), []byte(ccConfig(code)), 0o644)
	t.Setenv("TMPDIR", tmp)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir)

	workload(t, "ccatk_w", 37)
	if got, want := countOf(t, addr, "ccatk_w"), `probe_exporter_ccatk_getppid_total{comm="ccatk_w"} 37`; got != want {
		t.Errorf("counted %q, want %q (1000 a call is the planted object)", got, want)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != string(secretBefore) {
		t.Errorf("the secret file changed to %.60q (%v)", b, err)
	}
	sameTree(t, "the attacker's cache", before, treeState(t, cc))
	if strings.Contains(p.Log(), cc) {
		t.Errorf("the log names the attacker's directory:\n%s", tail(p.Log(), 20))
	}
	// The exporter's own cache holds the object under the very key
	// planted: the names the attacker computed were right.
	if _, err := os.Stat(filepath.Join("/var/cache/probe_exporter", key+".bpf.o")); err != nil {
		t.Errorf("the default cache lacks the object of the key planted: %v", err)
	}
	noLeak(t, p, addr, marker)
}

// TestCompilerCacheDirRefused: a --compiler.cache-dir another user can
// change (its own directory, one made 0777, a directory of root's under
// the user's home) fails the config with inline code with the named
// error; nothing is written there, and the other configs keep serving.
func TestCompilerCacheDirRefused(t *testing.T) {
	needClang(t)
	a := testkit.NewAttacker(t)
	tmp := sharedTmp(t)
	rootsUnderHome := filepath.Join(a.Home, "roots")
	for _, c := range []struct {
		name, dir, plant, want string
	}{
		{"the attacker's directory, mode 0777", filepath.Join(tmp, "cc"), "mkdir -m 0777 " + filepath.Join(tmp, "cc"), "owned by uid"},
		{"missing, under the attacker's home", filepath.Join(a.Home, "cache", "cc"), "", "owned by uid"},
		{"root's, under the attacker's home", rootsUnderHome, "", "owned by uid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.plant != "" {
				a.Run(t, c.plant)
			}
			if c.dir == rootsUnderHome {
				if err := os.Mkdir(rootsUnderHome, 0o700); err != nil && !os.IsExist(err) {
					t.Fatal(err)
				}
			}
			before := treeState(t, a.Home)
			beforeTmp := treeState(t, tmp)
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "ccatk.yaml"), []byte(ccConfig(fmt.Sprintf(ccCode, 1))), 0o644)
			writeConfig(t, dir, "e2e", e2eProg, e2eYAML)
			addr := freePort(t)
			p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir, "--compiler.cache-dir="+c.dir)

			workload(t, "e2e_cc", 5)
			testkit.Eventually(t, "the other config to count", func() bool {
				return hasLine(series(t, addr, "probe_exporter_getppid_calls_total"), `probe_exporter_getppid_calls_total{comm="e2e_cc"} 5`)
			})
			testkit.Eventually(t, "the refusal logged", func() bool {
				return strings.Contains(p.Log(), "is not private") && strings.Contains(p.Log(), c.want)
			})
			if l := series(t, addr, `probe_exporter_config_up{config="ccatk"}`); len(l) != 1 || !strings.HasSuffix(l[0], " 0") {
				t.Errorf("ccatk's config_up: %v", l)
			}
			if l := series(t, addr, "probe_exporter_ccatk_"); len(l) != 0 {
				t.Errorf("the refused config serves: %v", l)
			}
			sameTree(t, "the attacker's home", before, treeState(t, a.Home))
			sameTree(t, "the shared tmp", beforeTmp, treeState(t, tmp))
			noLeak(t, p, addr, "no secret here")
		})
	}
}

// TestCompilerCacheReadOnly: a cache filled ahead (--config.check with
// the BTF given by --btf.path, as README says), root's and mounted read
// only, serves the inline config without clang or bpftool (none in PATH)
// and without a write; the config counts exactly.
func TestCompilerCacheReadOnly(t *testing.T) {
	needClang(t)
	testkit.RequireRoot(t)
	base := t.TempDir()
	btf := filepath.Join(base, "btf")
	data, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Skipf("the kernel has no BTF: %v", err)
	}
	os.WriteFile(btf, data, 0o644)
	dir := filepath.Join(base, "configs")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "ccatk.yaml"), []byte(ccConfig(fmt.Sprintf(ccCode, 1))), 0o644)
	cc := filepath.Join(base, "cc")
	runBinary(t, "--config.dir="+dir, "--config.check", "--btf.path="+btf, "--compiler.cache-dir="+cc)
	if objs, _ := filepath.Glob(filepath.Join(cc, "*.bpf.o")); len(objs) != 1 {
		t.Fatalf("the check filled %v", objs)
	}
	filepath.Walk(cc, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			mode := os.FileMode(0o444)
			if fi.IsDir() {
				mode = 0o555
			}
			os.Chmod(p, mode)
		}
		return nil
	})
	if err := unix.Mount(cc, cc, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(cc, unix.MNT_DETACH) })
	if err := unix.Mount("", cc, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("read-only remount: %v", err)
	}
	before := treeState(t, cc)
	t.Setenv("PATH", t.TempDir())
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir, "--compiler.cache-dir="+cc)
	workload(t, "ccatk_ro", 11)
	if got, want := countOf(t, addr, "ccatk_ro"), `probe_exporter_ccatk_getppid_total{comm="ccatk_ro"} 11`; got != want {
		t.Errorf("counted %q, want %q", got, want)
	}
	sameTree(t, "the read-only cache", before, treeState(t, cc))
	if strings.Contains(p.Log(), "rejected") || strings.Contains(p.Log(), "level=ERROR") {
		t.Errorf("the log:\n%s", tail(p.Log(), 20))
	}
	noLeak(t, p, addr, "no secret here")
}
