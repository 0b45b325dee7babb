package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/probe-exporter/probe_exporter/loader"
)

// requireAttachEnv lists the attach types the kernel is known to have (the
// kernel matrix, test/kernels, sets it): their tests fail, not skip.
const requireAttachEnv = "PROBE_EXPORTER_REQUIRE_ATTACH"

func attachRequired(kind string) bool {
	for _, f := range strings.Fields(os.Getenv(requireAttachEnv)) {
		if f == kind {
			return true
		}
	}
	return false
}

// readZero is the workload of TestKernelExamples: n reads of 4096 bytes
// from /dev/zero, each one vfs_read() call, made by the calling thread
// only. It returns the exit code.
func readZero(n int) int {
	fd, err := unix.Open("/dev/zero", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		if got, err := unix.Read(fd, buf); err != nil || got != len(buf) {
			fmt.Fprintln(os.Stderr, "read /dev/zero:", got, err)
			return 3
		}
	}
	return 0
}

// TestKernelExamples serves the kprobe and fentry examples and checks the
// exact vfs_read() calls and bytes of a helper making 1000 reads of 4096
// bytes. Kernels without kprobes or fentry (this machine's) skip with the
// kernel's reason; the kernel matrix under qemu runs them for real.
func TestKernelExamples(t *testing.T) {
	dir, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	const reads = 1000
	for _, tc := range []struct {
		kind, name, metric string
	}{
		{kind: "kprobe", name: "vfs-kprobe", metric: "vfs_kprobe"},
		{kind: "fentry", name: "vfs-fentry", metric: "vfs_fentry"},
	} {
		t.Run(tc.kind+"_"+tc.name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(dir, tc.name+".bpf.o")); err != nil {
				testkit.RequireTools(t, "clang")
				if out, err := exec.Command("make", "-C", dir, tc.name+".bpf.o").CombinedOutput(); err != nil {
					t.Fatalf("make: %v\n%s", err, out)
				}
			}
			// Can this kernel attach it at all?
			cfgs, errs := config.Load(dir, []string{tc.name})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			o := loader.Load(context.Background(), cfgs[0], loader.Options{})
			errs = o.Errors()
			o.Close()
			if len(errs) > 0 {
				if attachRequired(tc.kind) {
					t.Fatal(errs)
				}
				t.Skipf("this kernel cannot attach %s: %v", tc.name, errs[len(errs)-1])
			}

			addr := exporter(t, "--config.dir="+dir, "--config.names="+tc.name, "--config.strict")
			comm := "e2e_" + tc.kind
			workload(t, comm, reads, "PROBE_E2E_SYSCALL=read")
			want := []struct {
				series string
				value  float64
			}{
				{fmt.Sprintf(`probe_exporter_%s_reads_total{command=%q}`, tc.metric, comm), reads},
				{fmt.Sprintf(`probe_exporter_%s_read_bytes_total{command=%q}`, tc.metric, comm), reads * 4096},
			}
			deadline := time.Now().Add(60 * time.Second)
			for _, w := range want {
				for {
					lines := series(t, addr, w.series+" ")
					if len(lines) == 1 {
						v, err := strconv.ParseFloat(lines[0][len(w.series)+1:], 64)
						if err == nil && v == w.value {
							break
						}
					}
					if time.Now().After(deadline) {
						t.Fatalf("want %s %v, got %v", w.series, w.value, lines)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
}
