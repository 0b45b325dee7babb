package bcc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/internal/privdir"
)

// testTranslator is a Translator against the running kernel's BTF, with
// vmlinux.h and the precompiled prelude cached across test runs.
func testTranslator(t *testing.T) *Translator {
	t.Helper()
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("the AST pass needs clang")
	}
	bpftool, err := exec.LookPath("bpftool")
	if err != nil {
		t.Skip("vmlinux.h needs bpftool")
	}
	btf, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Skipf("the kernel has no BTF: %v", err)
	}
	sum := sha256.Sum256(btf)
	dir := filepath.Join(os.TempDir(), "probe_exporter-bcc-test", hex.EncodeToString(sum[:8]))
	hdr := filepath.Join(dir, "vmlinux.h")
	if _, err := os.Stat(hdr); err != nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c").Output()
		if err != nil {
			t.Fatalf("bpftool: %v", err)
		}
		if err := os.WriteFile(hdr+".tmp", out, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(hdr+".tmp", hdr); err != nil {
			t.Fatal(err)
		}
	}
	return &Translator{
		Clang: clang,
		Args:  []string{"-target", "bpf", "-D__TARGET_ARCH_x86", "-I", dir, "-I", "/usr/include/x86_64-linux-gnu"},
		PCH:   filepath.Join(dir, "bcc-prelude.h.pch"),
	}
}

// compileAndLoad compiles translated C and loads it into the kernel, so
// that the verifier judges the implicit kernel reads.
func compileAndLoad(t *testing.T, tr *Translator, code string) {
	t.Helper()
	dir := t.TempDir()
	src, obj := filepath.Join(dir, "p.c"), filepath.Join(dir, "p.o")
	os.WriteFile(src, []byte(code), 0o600)
	args := append(append([]string{"-g", "-O2"}, tr.Args...), "-c", src, "-o", obj)
	if out, err := exec.Command(tr.Clang, args...).CombinedOutput(); err != nil {
		t.Fatalf("clang: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(obj)
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("loading the translated program: %v", err)
	}
	coll.Close()
}

// TestTranslateRebuildsStalePCH: a precompiled prelude clang refuses
// (from another clang, or damaged, its record intact), one that does not
// match its record, and names planted where it is kept (a symlink to a
// root-only file) are built again, never followed.
func TestTranslateRebuildsStalePCH(t *testing.T) {
	for _, c := range []struct {
		name  string
		plant func(t *testing.T, tr *Translator, secret string)
	}{
		{"refused by clang", func(t *testing.T, tr *Translator, secret string) {
			privdir.WriteFile(strings.TrimSuffix(tr.PCH, ".pch"), []byte(pchHeaders))
			privdir.WriteEntry(tr.PCH, tr.pchKey(), []byte("not a precompiled header"))
		}},
		{"no record", func(t *testing.T, tr *Translator, secret string) {
			os.WriteFile(tr.PCH, []byte("not a precompiled header"), 0o600)
		}},
		{"symlinks to a secret", func(t *testing.T, tr *Translator, secret string) {
			os.Symlink(secret, tr.PCH)
			os.Symlink(secret, tr.PCH+".tmp")
			os.Symlink(secret, strings.TrimSuffix(tr.PCH, ".pch"))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := testTranslator(t)
			dir := t.TempDir()
			tr.PCH = filepath.Join(dir, "bcc-prelude.h.pch")
			secret := filepath.Join(dir, "secret")
			if err := os.WriteFile(secret, []byte("secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c.plant(t, tr, secret)
			res, err := tr.Translate(context.Background(), Source{Config: "t", Code: "BPF_HASH(h);\nint kprobe__f(struct pt_regs *ctx) { u64 k = 1; h.increment(k); return 0; }\n"})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(res.Code, `SEC("kprobe/f") int kprobe__f`) {
				t.Errorf("translation:\n%s", res.Code)
			}
			if b, err := os.ReadFile(secret); err != nil || string(b) != "secret\n" {
				t.Errorf("the secret became %.40q (%v)", b, err)
			}
			if err := privdir.VerifyEntry(tr.PCH, tr.pchKey()); err != nil {
				t.Errorf("the PCH was not made again: %v", err)
			}
		})
	}
}

const readsCode = `#include <linux/blkdev.h>
struct val_t { u64 n; };
BPF_HASH(h, u64);
BPF_HASH(vals, u64, struct val_t);
BPF_HISTOGRAM(sizes);

int f(struct pt_regs *ctx, struct request *req) {
    u64 ip = PT_REGS_IP(ctx);
    struct gendisk *d = req->q->disk;
    char c = d->disk_name[0];
    char name[32];
    bpf_probe_read(&name, sizeof(name), &d->disk_name);
    u64 *v = h.lookup(&ip);
    if (v) {
        *v += req->__data_len;
    }
    struct val_t *w = vals.lookup(&ip);
    if (w)
        w->n = w->n + c;
    sizes.increment(bpf_log2l(req->__data_len));
    return 0;
}
`

// TestTranslate runs both passes with clang on the running kernel's BTF.
func TestTranslate(t *testing.T) {
	tr := testTranslator(t)
	tr.TraceFS = tracefsWith(t, map[string]string{"syscalls:sys_enter_getppid": getppidFormat})
	for _, tc := range []struct {
		name    string
		code    string
		probes  []Probe
		pidKeys bool
		want    []string
		pidMaps []string
		// dropped names functions left out, with a substring of why.
		dropped map[string]string
		err     string
		// load loads the result into the kernel.
		load bool
	}{
		{
			name:   "implicit kernel reads",
			code:   readsCode,
			probes: []Probe{{Kind: "kprobe", Target: "blk_mq_start_request", Func: "f"}},
			want: []string{
				"u64 ip = PT_REGS_IP(ctx);",
				"struct gendisk *d = __bcc_read(__bcc_read(req->q)->disk);",
				"char c = __bcc_read(d->disk_name[0]);",
				"bpf_probe_read(&name, sizeof(name), &d->disk_name);",
				"*v += __bcc_read(req->__data_len);",
				"w->n = w->n + c;",
				"__bcc_increment(sizes, bpf_log2l(__bcc_read(req->__data_len)));",
				"#line 1 \"code\"\n/* #include <linux/blkdev.h>",
			},
			load: true,
		},
		{
			name: "tracepoint args are read directly",
			code: "BPF_ARRAY(nr, u64, 1);\nTRACEPOINT_PROBE(syscalls, sys_enter_getppid) {\n  int k = 0;\n  nr.increment(k, args->__syscall_nr);\n  return 0;\n}\n",
			want: []string{"__bcc_increment(nr, k, args->__syscall_nr);"},
			load: true,
		},
		{
			name:    "pid keys",
			code:    "struct gc_event_t { u64 gen; };\nBPF_HASH(gc_counts, struct gc_event_t);\nBPF_ARRAY(seen, u64, 1);\nBPF_TABLE(\"hash\", u32, u64, t, 8);\nint trace(struct pt_regs *ctx) {\n  struct gc_event_t e = {};\n  int k = 0;\n  u64 one = 1, *v;\n  gc_counts.increment(e);\n  gc_counts.increment(e, 3);\n  v = gc_counts.lookup(&e);\n  gc_counts.update(&e, &one);\n  gc_counts.delete(&e);\n  v = gc_counts.lookup_or_try_init(&e, &one);\n  seen.increment(k);\n  t.insert(&k, &one);\n  return 0;\n}\n",
			probes:  []Probe{{Kind: "uprobe", Target: "malloc", Func: "trace"}},
			pidKeys: true,
			want: []string{
				"#define __BCC_PID_KEYS 1",
				"__bcc_pincrement(gc_counts, e);", "__bcc_pincrement(gc_counts, e, 3);", "v = __bcc_plookup(gc_counts, &e);",
				"__bcc_pupdate(gc_counts, &e, &one);", "__bcc_pdelete(gc_counts, &e);", "__bcc_plookup_or_try_init(gc_counts, &e, &one)",
				"__bcc_increment(seen, k);", "__BCC_TABLEK(BPF_MAP_TYPE_HASH, u32, u64, t, 8);", "__bcc_pinsert(t, &k, &one);",
			},
			pidMaps: []string{"gc_counts", "t"},
			load:    true,
		},
		{
			// ebpf-userspace-exporter's redis_alloc_latency example declares
			// BPF_PERF_OUTPUT(events) beside its maps, pid keys and all.
			name:    "perf and ring buffer outputs",
			code:    "struct ev { u64 n; };\nBPF_HASH(h);\nBPF_PERF_OUTPUT(events);\nBPF_RINGBUF_OUTPUT(rb, 8);\nint trace(struct pt_regs *ctx) {\n  struct ev e = {1};\n  u64 k = 0;\n  h.increment(k);\n  events.perf_submit(ctx, &e, sizeof(e));\n  rb.ringbuf_output(&e, sizeof(e), 0);\n  struct ev *r = rb.ringbuf_reserve(sizeof(struct ev));\n  if (!r)\n    return 0;\n  r->n = 2;\n  if (k)\n    rb.ringbuf_discard(r, 0);\n  else\n    rb.ringbuf_submit(r, 0);\n  return 0;\n}\n",
			probes:  []Probe{{Kind: "uprobe", Target: "malloc", Func: "trace"}},
			pidKeys: true,
			want: []string{
				"BPF_PERF_OUTPUT(events);", "__bcc_pincrement(h, k);", "__bcc_perf_submit(events, ctx, &e, sizeof(e));",
				"__bcc_ringbuf_output(rb, &e, sizeof(e), 0);", "__bcc_ringbuf_reserve(rb, sizeof(struct ev));",
				"__bcc_ringbuf_discard(rb, r, 0);", "__bcc_ringbuf_submit(rb, r, 0);",
			},
			pidMaps: []string{"h"},
			load:    true,
		},
		{
			name: "BPF_TABLE and bpf_trace_printk",
			code: "BPF_TABLE(\"percpu_array\", int, u64, per, 4);\nint kprobe__vfs_read(struct pt_regs *ctx) {\n  int k = 1;\n  per.increment(k);\n  bpf_trace_printk(\"read %d\\n\", k);\n  return 0;\n}\n",
			want: []string{"__BCC_TABLE(BPF_MAP_TYPE_PERCPU_ARRAY, int, u64, per, 4);"},
			load: true,
		},
		{
			name:    "a field the kernel lacks leaves out its function only",
			code:    "BPF_HASH(h);\nint start(struct pt_regs *ctx, struct request *req) {\n  u64 k = (u64)req, one = 1;\n  h.update(&k, &one);\n  return 0;\n}\nint done(struct pt_regs *ctx, struct request *req) {\n  struct gendisk *d = req->rq_disk_that_never_was;\n  return d != 0;\n}\n",
			probes:  []Probe{{Kind: "kprobe", Target: "a", Func: "start"}, {Kind: "kprobe", Target: "b", Func: "done"}},
			want:    []string{`SEC("kprobe/a") int start(`, "\n\n\n\n"},
			dropped: map[string]string{"done": `config "t": code: line 8: the running kernel's struct request has no field rq_disk_that_never_was (in "struct gendisk *d = req->rq_disk_that_never_was;")`},
			load:    true,
		},
		{
			name:   "every probe left out fails the config",
			code:   "int done(struct pt_regs *ctx, struct request *req) {\n  return req->rq_disk_that_never_was != 0;\n}\n",
			probes: []Probe{{Kind: "kprobe", Target: "b", Func: "done"}},
			err:    "function done: config \"t\": code: line 2: the running kernel's struct request has no field rq_disk_that_never_was",
		},
		{
			name:   "a macro of a kernel header",
			code:   "int f(struct pt_regs *ctx) {\n  return NOT_A_KERNEL_MACRO;\n}\n",
			probes: []Probe{{Kind: "kprobe", Target: "b", Func: "f"}},
			err:    "line 2: NOT_A_KERNEL_MACRO is not defined",
		},
		{
			name: "an error outside functions fails the config",
			code: "BPF_HASH(h, no_such_kernel_type_t);\nint f(struct pt_regs *ctx) { return 0; }\n",
			err:  `config "t": code: line 1: no_such_kernel_type_t is not defined`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tr.Translate(context.Background(), Source{Config: "t", Code: tc.code, Probes: tc.probes, PIDKeys: tc.pidKeys})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.Code, w) {
					t.Errorf("translation lacks %q:\n%s", w, res.Code[strings.Index(res.Code, "#line 1"):])
				}
			}
			if strings.Join(res.PIDMaps, ",") != strings.Join(tc.pidMaps, ",") {
				t.Errorf("pid maps %v, want %v", res.PIDMaps, tc.pidMaps)
			}
			if len(res.Dropped) != len(tc.dropped) {
				t.Errorf("dropped %v, want %v", res.Dropped, tc.dropped)
			}
			for f, w := range tc.dropped {
				if e := res.Dropped[f]; e == nil || !strings.Contains(e.Error(), w) {
					t.Errorf("dropped %s: %v, want %q", f, e, w)
				}
			}
			if tc.load {
				compileAndLoad(t, tr, res.Code)
			}
		})
	}
}
