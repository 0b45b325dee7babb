package main

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/probe-exporter/probe_exporter/internal/testkit/elfgen"
)

// maxHWM is the bound on the exporter's peak resident memory while it
// reads the hostile binaries: before, the .gopclntab alone took it past
// the machine's memory and the zlib bomb to 6 GB.
const maxHWM = 300 << 20

// hostileUSDT attaches to a USDT probe of binaries named pxnote.
const hostileUSDT = `programs:
  - name: hostile_notes
    metrics:
      counters:
        - name: hostile_probe_total
          help: Probe hits
          table: hits
          labels:
            - name: pid
              size: 4
              decoders:
                - name: uint
    usdt:
      probe__here: on_probe
    attachments:
      binary_name: "pxnote"
    code: |
      #include "vmlinux.h"
      #include <bpf/bpf_helpers.h>
      #include <bpf/usdt.bpf.h>

      struct {
          __uint(type, BPF_MAP_TYPE_HASH);
          __uint(max_entries, 16);
          __type(key, u32);
          __type(value, u64);
      } hits SEC(".maps");

      SEC("usdt")
      int BPF_USDT(on_probe)
      {
          u32 pid = bpf_get_current_pid_tgid() >> 32;
          u64 one = 1;
          bpf_map_update_elem(&hits, &pid, &one, BPF_ANY);
          return 0;
      }

      char LICENSE[] SEC("license") = "GPL";
`

// TestHostileBinaries: an unprivileged user runs, under the names the
// profiler and a USDT program select, copies of a tiny C program with
// one section replaced by the inputs that crashed or exhausted the
// exporter: a 5-byte .eh_frame, an FDE whose CIE pointer wraps below
// zero, a 64-bit length at the section end, a 16-byte .gopclntab on a
// stripped binary claiming 800 million functions, a .debug_frame that
// inflates to 1.5 GB (claiming it, or claiming 16 MiB), and a .note.stapsdt with namesz 0xffffffff. The
// exporter, with default flags, names each file in its log, does not
// panic, answers /metrics, stays under maxHWM and ends on SIGTERM with 0.
func TestHostileBinaries(t *testing.T) {
	a := testkit.NewAttacker(t)
	dir := t.TempDir()
	const src = "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n"
	build := func(name string, flags ...string) []byte {
		b, err := os.ReadFile(testkit.BuildC(t, name, src, append(flags, "-O2")...))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain, stripped := build("victim"), build("stripped", "-s")

	le32 := func(v ...uint32) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, x)
		}
		return b
	}
	note := binary.LittleEndian.AppendUint32(le32(0xffffffff, 0, 3), 0)
	type hostile struct {
		dir, name       string
		bin             []byte
		target, section string
		typ             elf.SectionType
		flags           elf.SectionFlag
		data            []byte
	}
	cases := []hostile{
		{"eh5", "pxvictim", plain, ".eh_frame", ".eh_frame", elf.SHT_PROGBITS, elf.SHF_ALLOC, []byte{1, 0, 0, 0, 0}},
		{"ciewrap", "pxvictim", plain, ".eh_frame", ".eh_frame", elf.SHT_PROGBITS, elf.SHF_ALLOC, le32(12, 0x100, 0, 0)},
		{"len64", "pxvictim", plain, ".eh_frame", ".eh_frame", elf.SHT_PROGBITS, elf.SHF_ALLOC, []byte{0xff, 0xff, 0xff, 0xff, 1, 2}},
		{"pclntab", "pxvictim", stripped, ".comment", ".gopclntab", elf.SHT_PROGBITS, elf.SHF_ALLOC,
			[]byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8, 0x30, 0x30, 0x30, 0x30, 0, 0, 0, 0}},
		{"zbomb", "pxvictim", plain, ".eh_frame", ".debug_frame", elf.SHT_PROGBITS, elf.SHF_COMPRESSED, elfgen.ZlibBomb(1500 << 20)},
		// The same stream under a header claiming 16 MiB: inflated into
		// 16 MiB, and not a byte more.
		{"zlie", "pxvictim", plain, ".eh_frame", ".debug_frame", elf.SHT_PROGBITS, elf.SHF_COMPRESSED, func() []byte {
			b := elfgen.ZlibBomb(1500 << 20)
			binary.LittleEndian.PutUint64(b[8:], 16<<20)
			return b
		}()},
		{"notes", "pxnote", plain, ".comment", ".note.stapsdt", elf.SHT_NOTE, 0, note},
	}
	targets := filepath.Join(dir, "targets.yaml")
	os.WriteFile(targets, []byte("targets:\n  - app: hostile\n    comm: pxvictim\n"), 0o644)
	args := []string{"--web.listen-address=" + freePort(t), "--profile.config=" + targets}
	if _, err := exec.LookPath("clang"); err == nil {
		cfg := filepath.Join(dir, "configs")
		os.MkdirAll(cfg, 0o755)
		os.WriteFile(filepath.Join(cfg, "hostile.yaml"), []byte(hostileUSDT), 0o644)
		args = append(args, "--config.dir="+cfg, "--config.names=hostile")
	} else {
		cases = cases[:len(cases)-1]
		t.Log("no clang: the USDT note reader is not attacked here (its unit tests and FuzzNotes cover it)")
	}
	addr := strings.TrimPrefix(args[0], "--web.listen-address=")
	p := startExporter(t, func() bool { return serves(addr) }, args...)

	for _, c := range cases {
		data, err := elfgen.Patch(c.bin, c.target, c.section, c.typ, c.flags, c.data)
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		d := filepath.Join(a.Home, c.dir)
		a.Run(t, "mkdir "+d)
		path := filepath.Join(d, c.name)
		a.WriteFile(t, path, data, 0o755)
		a.Start(t, path)
		// The file is named, through the process's root, in a log line.
		want := filepath.Join(c.dir, c.name)
		testkit.Eventually(t, "a log line naming "+path, func() bool {
			log := p.Log()
			return strings.Contains(log, want+":") || strings.Contains(log, want+" ") || strings.Contains(log, want+")")
		})
		if code, _, _ := testkit.Get(t, "http://"+addr+"/metrics"); code != 200 {
			t.Fatalf("/metrics answered %d after %s", code, c.dir)
		}
	}
	hwm := testkit.StatusKiB(t, p.Pid(), "VmHWM:") << 10
	t.Logf("exporter peak resident memory %d MiB (bound %d MiB)", hwm>>20, maxHWM>>20)
	if hwm > maxHWM {
		t.Errorf("exporter peak resident memory %d MiB, more than %d MiB", hwm>>20, maxHWM>>20)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exporter exited %d on SIGTERM", code)
	}
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("the exporter panicked:\n%s", tail(p.Log(), 40))
	}
	for _, c := range cases {
		for _, l := range strings.Split(p.Log(), "\n") {
			if strings.Contains(l, filepath.Join(c.dir, c.name)) {
				t.Logf("%s: %s", c.dir, l)
				break
			}
		}
	}
}
