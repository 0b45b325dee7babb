package cfi

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// leafMidC calls mid(), which calls leaf() and snprintf.
const leafMidC = "#include <stdio.h>\n__attribute__((noinline)) long leaf(long n) { long s = 0; for (long i = 0; i < n; i++) s += i * i; return s; }\n__attribute__((noinline)) long mid(long n) { char buf[300]; snprintf(buf, sizeof buf, \"%ld\", n); return leaf(n) + buf[0]; }\nint main(int argc, char **argv) { return (int)mid(argc * 1000); }\n"

// TestAgainstReadelf compares every row binutils' readelf interprets
// (readelf -wF) with the row Find gives for its address, for libc and for
// a program built with -O2 and with frame pointers.
func TestAgainstReadelf(t *testing.T) {
	testkit.RequireTools(t, "readelf")
	files := []string{"/lib/x86_64-linux-gnu/libc.so.6"}
	if _, err := exec.LookPath("gcc"); err == nil {
		for _, flags := range [][]string{{"-O2"}, {"-O0", "-fno-omit-frame-pointer"}} {
			bin := testkit.BuildC(t, "p"+strings.Join(flags, ""), leafMidC, flags...)
			files = append(files, bin)
		}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if _, err := os.Stat(file); err != nil {
				t.Skip(err)
			}
			rows, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			// readelf exits 1 over warnings about sections it does not
			// read; its table is complete.
			out, _ := exec.Command("readelf", "-wF", file).Output()
			checked := 0
			var cols []string
			inFDE := false
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) > 3 && (f[3] == "FDE" || f[3] == "CIE") {
					inFDE = f[3] == "FDE"
					cols = nil
					continue
				}
				if !inFDE {
					continue
				}
				if len(f) > 1 && f[0] == "LOC" {
					cols = f
					continue
				}
				if len(f) != len(cols) || len(f) < 2 || len(f[0]) != 16 {
					continue
				}
				pc, err := strconv.ParseUint(f[0], 16, 64)
				if err != nil {
					continue
				}
				got, ok := Find(rows, pc)
				if !ok {
					t.Fatalf("no row for 0x%x", pc)
				}
				wantReg, wantOff := RegSP, int64(8)
				switch {
				case f[1] == "exp":
				case strings.HasPrefix(f[1], "rsp+"):
					wantOff, _ = strconv.ParseInt(f[1][4:], 10, 64)
				case strings.HasPrefix(f[1], "rbp+"):
					wantReg = RegBP
					wantOff, _ = strconv.ParseInt(f[1][4:], 10, 64)
				default:
					wantReg, wantOff = RegNone, 0
				}
				if got.CFAReg != wantReg || (wantReg != RegNone && int64(got.CFAOffset) != wantOff) {
					t.Errorf("0x%x: CFA %d%+d, readelf says %s", pc, got.CFAReg, got.CFAOffset, f[1])
				}
				for i, c := range cols {
					if c != "rbp" {
						continue
					}
					if off, ok := strings.CutPrefix(f[i], "c"); ok {
						n, _ := strconv.ParseInt(off, 10, 64)
						if !got.BPSaved || int64(got.BPOffset) != n {
							t.Errorf("0x%x: rbp saved %v at %d, readelf says %s", pc, got.BPSaved, got.BPOffset, f[i])
						}
					} else if got.BPSaved {
						t.Errorf("0x%x: rbp saved at %d, readelf says %s", pc, got.BPOffset, f[i])
					}
				}
				checked++
			}
			if checked < 10 {
				t.Fatalf("only %d rows compared", checked)
			}
			t.Logf("%s: %d rows, %d compared with readelf", filepath.Base(file), len(rows), checked)
		})
	}
}

func TestLEB(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		u    uint64
		s    int64
		size uint64
	}{
		{[]byte{0x02}, 2, 2, 1},
		{[]byte{0x7f}, 127, -1, 1},
		{[]byte{0x80, 0x01}, 128, 128, 2},
		{[]byte{0xe5, 0x8e, 0x26}, 624485, 624485, 3},
		{[]byte{0xc0, 0xbb, 0x78}, 1973696, -123456, 3},
	} {
		r := &reader{data: tc.in}
		if got := r.uleb(); got != tc.u || r.off != tc.size {
			t.Errorf("uleb %x: %d (%d bytes), want %d", tc.in, got, r.off, tc.u)
		}
		r = &reader{data: tc.in}
		if got := r.sleb(); got != tc.s {
			t.Errorf("sleb %x: %d, want %d", tc.in, got, tc.s)
		}
	}
	r := &reader{data: []byte{0x80}}
	r.uleb()
	if r.err == nil {
		t.Error("truncated LEB128 accepted")
	}
}

// BenchmarkLoad: reading the rows of one file, done once per file (not per
// process) by the profiler.
func BenchmarkLoad(b *testing.B) {
	for _, file := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/python3.11"} {
		if _, err := os.Stat(file); err != nil {
			continue
		}
		b.Run(filepath.Base(file), func(b *testing.B) {
			var n int
			for i := 0; i < b.N; i++ {
				rows, err := Load(file)
				if err != nil {
					b.Fatal(err)
				}
				n = len(rows)
			}
			b.ReportMetric(float64(n), "rows")
			b.ReportMetric(float64(n*16)/1024, "KiB-in-kernel")
		})
	}
}
