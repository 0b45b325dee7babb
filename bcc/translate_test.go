package bcc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsBCC(t *testing.T) {
	for _, tc := range []struct {
		name string
		code string
		want bool
	}{
		{"hash", "BPF_HASH(counts, u32);", true},
		{"histogram", "BPF_HISTOGRAM(dist);\n", true},
		{"increment", "int f(void *ctx) { m.increment(k); return 0; }", true},
		{"usdt", "int f(struct pt_regs *ctx) { int x; bpf_usdt_readarg(1, ctx, &x); return 0; }", true},
		{"tracepoint", "TRACEPOINT_PROBE(sched, sched_switch) { return 0; }", true},
		{"kernel include", "#include <uapi/linux/ptrace.h>\nint f(struct pt_regs *ctx) { return 0; }", true},
		{"libbpf", "#include \"vmlinux.h\"\n#include <bpf/bpf_helpers.h>\nSEC(\"tp/x/y\") int f(void *ctx) { return 0; }", false},
		{"libbpf with BPF_HASH in a comment", "#include <bpf/bpf_helpers.h>\n// like BPF_HASH(x)\n", false},
		{"plain C", "int f(void *ctx) { return 0; }", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsBCC(tc.code); got != tc.want {
				t.Errorf("IsBCC = %v, want %v", got, tc.want)
			}
		})
	}
}

// tracefsWith writes a fake tracefs holding the given tracepoint formats.
func tracefsWith(t *testing.T, formats map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, f := range formats {
		cat, ev, _ := strings.Cut(name, ":")
		p := filepath.Join(dir, "events", cat, ev)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "format"), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const getppidFormat = `name: sys_enter_getppid
ID: 1
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:int __syscall_nr;	offset:8;	size:4;	signed:1;

print fmt: ""
`

const rqFormat = `format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:dev_t dev;	offset:8;	size:4;	signed:0;
	field:sector_t sector;	offset:16;	size:8;	signed:0;
	field:char rwbs[10];	offset:34;	size:10;	signed:0;
	field:__data_loc char[] cmd;	offset:60;	size:4;	signed:0;
`

// TestTokenPass checks the line-for-line pass: what each bcc construct
// becomes, and the errors for constructs it does not handle.
func TestTokenPass(t *testing.T) {
	tracefs := tracefsWith(t, map[string]string{"syscalls:sys_enter_getppid": getppidFormat})
	for _, tc := range []struct {
		name   string
		code   string
		probes []Probe
		// want are substrings of the body; header of the header.
		want, header []string
		// err is a substring of the error.
		err string
	}{
		{
			name:   "maps and methods",
			code:   "BPF_HASH(h, u32);\nBPF_ARRAY(a, u64, 4);\nint f(struct pt_regs *ctx) {\n  u32 k = 1; u64 z = 0, *v;\n  v = h.lookup(&k); h.update(&k, &z); h.insert(&k, &z); h.delete(&k);\n  h.increment(k); h.increment(k, 5); a.atomic_increment(k);\n  v = h.lookup_or_try_init(&k, &z);\n  return 0;\n}\n",
			probes: []Probe{{Kind: "kprobe", Target: "vfs_read", Func: "f"}},
			want: []string{
				`SEC("kprobe/vfs_read") int f(struct pt_regs *ctx)`,
				"v = __bcc_lookup(h, &k); __bcc_update(h, &k, &z); __bcc_insert(h, &k, &z); __bcc_delete(h, &k);",
				"__bcc_increment(h, k); __bcc_increment(h, k, 5); __bcc_atomic_increment(a, k);",
				"__bcc_lookup_or_try_init(h, &k, &z)",
				`char LICENSE[] SEC("license") = "GPL";`,
			},
		},
		{
			name:   "kprobe arguments after ctx",
			code:   "int trace(struct pt_regs *ctx, struct request *req,\n          unsigned int bytes) {\n  return 0;\n}\n",
			probes: []Probe{{Kind: "kprobe", Target: "blk_account_io_done", Func: "trace"}},
			want: []string{
				"int trace(struct pt_regs *ctx\n) { struct request * req = (struct request *)PT_REGS_PARM1(ctx); unsigned int bytes = (unsigned int)PT_REGS_PARM2(ctx);\n",
			},
		},
		{
			name: "kprobe__ and kretprobe__ prefixes",
			code: "int kprobe__vfs_read(struct pt_regs *ctx, struct file *file) { return 0; }\nint kretprobe__vfs_read(struct pt_regs *ctx) { return PT_REGS_RC(ctx); }\n",
			want: []string{
				`SEC("kprobe/vfs_read") int kprobe__vfs_read(struct pt_regs *ctx) { struct file * file = (struct file *)PT_REGS_PARM1(ctx);`,
				`SEC("kretprobe/vfs_read") int kretprobe__vfs_read(struct pt_regs *ctx)`,
			},
		},
		{
			name:   "TRACEPOINT_PROBE",
			code:   "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {\n  return args->__syscall_nr;\n}\n",
			want:   []string{`SEC("tracepoint/syscalls/sys_enter_getppid") int tracepoint__syscalls__sys_enter_getppid(struct tracepoint__syscalls__sys_enter_getppid *args) {` + "\n  return args->__syscall_nr;"},
			header: []string{"struct tracepoint__syscalls__sys_enter_getppid {\n\tunsigned short common_type;\n\tunsigned char common_flags;\n\tunsigned char common_preempt_count;\n\tint common_pid;\n\tint __syscall_nr;\n};"},
		},
		{
			name:   "usdt, uprobes and helpers",
			code:   "static int helper(int x) { return x; }\nint other(int x) { return x; }\nint gc(struct pt_regs *ctx) { int g; bpf_usdt_readarg(1, ctx, &g); return helper(g); }\nint up(struct pt_regs *ctx, long n) { return other(n); }\n",
			probes: []Probe{{Kind: "usdt", Target: "python:gc__start", Func: "gc"}, {Kind: "uprobe", Target: "malloc", Func: "up"}},
			want: []string{
				"static int helper(int x)",
				"static __always_inline int other(int x)",
				`SEC("usdt") int gc(struct pt_regs *ctx)`,
				`SEC("uprobe") int up(struct pt_regs *ctx) { long n = (long)PT_REGS_PARM1(ctx);`,
			},
			header: []string{"#include <bpf/usdt.bpf.h>"},
		},
		{
			name: "kernel includes dropped, their macros kept",
			code: "#include <linux/blkdev.h>\n#include <uapi/linux/ptrace.h>\n#include \"mine.h\"\nBPF_HASH(h);\n",
			want: []string{
				"/* #include <linux/blkdev.h>: dropped, vmlinux.h has the kernel's types */\n/* #include <uapi/linux/ptrace.h>: dropped, vmlinux.h has the kernel's types */\n#include \"mine.h\"\n",
			},
			header: []string{"#define REQ_OP_MASK"},
		},
		{
			name:   "comments and strings are not code",
			code:   "BPF_HASH(h);\n// h.perf_submit(ctx)\nint f(void *ctx) { char s[] = \"h.increment(x)\"; /* h.lookup(&k) */ return 0; }\n",
			probes: []Probe{{Kind: "tracepoint", Target: "a:b", Func: "f"}},
			want:   []string{"// h.perf_submit(ctx)", `"h.increment(x)"`, "/* h.lookup(&k) */", `SEC("tracepoint/a/b") int f`},
		},
		{
			name:   "BPF_TABLE",
			code:   "BPF_TABLE(\"lru_hash\", u32, u64, seen, 128);\nint f(void *ctx) { u32 k = 0; seen.increment(k); return 0; }\n",
			probes: []Probe{{Kind: "tracepoint", Target: "a:b", Func: "f"}},
			want:   []string{"__BCC_TABLE(BPF_MAP_TYPE_LRU_HASH, u32, u64, seen, 128);", "__bcc_increment(seen, k)"},
		},
		{
			name: "BPF_TABLE of a kind not supported",
			code: "BPF_TABLE(\"prog\", int, int, jumps, 8);\n",
			err:  `line 1: BPF_TABLE: want`,
		},
		{
			name: "unsupported map",
			code: "#include <uapi/linux/ptrace.h>\nBPF_STACK_TRACE(stacks, 1024);\n",
			err:  `config "c": code: line 2: bcc's BPF_STACK_TRACE is not supported by the translator`,
		},
		{
			name: "unsupported method",
			code: "BPF_HASH(h);\nint f(void *ctx) {\n  h.get_stackid(ctx, 0);\n  return 0;\n}\n",
			err:  `config "c": code: line 3: map method get_stackid is not supported by the translator (supported: lookup, update, insert, delete, increment, atomic_increment, lookup_or_try_init, perf_submit, ringbuf_output, ringbuf_reserve, ringbuf_submit, ringbuf_discard) (in "h.get_stackid(ctx, 0)")`,
		},
		{
			name:   "arguments on a usdt probe",
			code:   "BPF_HASH(h);\nint f(struct pt_regs *ctx, int x) { return 0; }\n",
			probes: []Probe{{Kind: "usdt", Target: "gc__start", Func: "f"}},
			err:    "line 2: function f is a usdt: bcc gives arguments after ctx only to kprobes and uprobes",
		},
		{
			name: "tracepoint the kernel lacks",
			code: "TRACEPOINT_PROBE(nope, nothing) { return 0; }\n",
			err:  "line 1: the kernel has no tracepoint nope:nothing",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tokenPass(Source{Config: "c", Code: tc.code, Probes: tc.probes}, nil, tracefs)
			if tc.err != "" {
				var e *Error
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &e) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(u.body, w) {
					t.Errorf("body lacks %q:\n%s", w, u.body)
				}
			}
			for _, w := range tc.header {
				if !strings.Contains(u.header, w) {
					t.Errorf("header lacks %q", w)
				}
			}
			if got, want := strings.Count(strings.TrimSuffix(u.body, "\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n"), "\n"), strings.Count(tc.code, "\n"); got != want {
				t.Errorf("body has %d lines, code %d: lines must stay where they are", got, want)
			}
		})
	}
}

func TestTracepointStruct(t *testing.T) {
	got, err := tracepointStructFrom("block", "block_rq_issue", rqFormat)
	if err != nil {
		t.Fatal(err)
	}
	want := `struct tracepoint__block__block_rq_issue {
	unsigned short common_type;
	unsigned char common_flags;
	unsigned char common_preempt_count;
	int common_pid;
	dev_t dev;
	sector_t sector;
	char __pad0[10];
	char rwbs[10];
	char __pad1[16];
	int data_loc_cmd;
};
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := tracepointStructFrom("a", "b", "format:\n"); err == nil {
		t.Error("a format without fields must fail")
	}
}

// hostile are inputs a config may carry by mistake or malice.
var hostile = []string{
	"",
	"int f(struct pt_regs *ctx) {",
	"int f(struct pt_regs *ctx, ) { return 0; }",
	"int f(, int x) { return 0; }",
	"BPF_HASH(",
	"BPF_HASH(h);\nint f(void *c) { h.increment(",
	"BPF_HASH(h);\nh.",
	"TRACEPOINT_PROBE(",
	"TRACEPOINT_PROBE(a) { }",
	"TRACEPOINT_PROBE(a, b, c) { }",
	"TRACEPOINT_PROBE(\"/..\", \"/../../etc\") { }",
	"/* unterminated",
	"\"unterminated\\",
	"#include <linux/",
	"}}}}))))",
	"int kprobe__x(struct pt_regs *ctx, int a, int b, int c, int d, int e, int f) { return 0; }",
	strings.Repeat("BPF_HASH(h);\n", 2000) + strings.Repeat("{", 10000),
}

// TestTokenPassHostile: malformed code gives an error or a translation,
// never a panic.
func TestTokenPassHostile(t *testing.T) {
	tracefs := tracefsWith(t, map[string]string{"syscalls:sys_enter_getppid": getppidFormat})
	for _, code := range hostile {
		tokenPass(Source{Config: "c", Code: code, Probes: []Probe{{Kind: "kprobe", Target: "x", Func: "f"}}}, nil, tracefs)
	}
}

func FuzzTokenPass(f *testing.F) {
	for _, code := range hostile {
		f.Add(code)
	}
	f.Add(readsCode)
	f.Fuzz(func(t *testing.T, code string) {
		IsBCC(code)
		u, err := tokenPass(Source{Config: "c", Code: code, Probes: []Probe{{Kind: "kprobe", Target: "x", Func: "f"}}}, nil, t.TempDir())
		if err == nil && !strings.Contains(u.body, "LICENSE") && !strings.Contains(code, `SEC("license")`) {
			t.Errorf("no license in\n%s", u.body)
		}
	})
}
