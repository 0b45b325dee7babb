package profile

import (
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/procfs"
)

// BenchmarkSymbolize1000: symbolizing 1000 user stacks of 20 frames of a
// running process with warm caches (libc and the binary).
func BenchmarkSymbolize1000(b *testing.B) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	var maps []procfs.Mapping
	for i := 0; i < 200; i++ { // until the child has exec'ed sleep
		maps, _ = readMaps("/proc", pid)
		files := 0
		for _, m := range maps {
			if strings.HasPrefix(m.Path, "/") {
				files++
			}
		}
		if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); strings.HasSuffix(exe, "sleep") && files > 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(maps) == 0 {
		b.Skip("cannot read the process's maps")
	}
	s := newSymbolizer("/proc", slog.New(slog.DiscardHandler))
	// Tables are loaded when a process is described, as the profiler
	// does at its start.
	var files []*procfs.Mapping
	var hosts []string
	for i := range maps {
		if strings.HasPrefix(maps[i].Path, "/") {
			files = append(files, &maps[i])
			hosts = append(hosts, s.hostPath(pid, &maps[i]))
		}
	}
	s.hold(pid, 0, hosts, files)
	// Addresses inside each executable mapping, spread over its range.
	var addrs []uint64
	for _, m := range maps {
		if !strings.HasPrefix(m.Path, "/") {
			continue
		}
		for i := uint64(0); i < 10; i++ {
			addrs = append(addrs, m.Start+(m.End-m.Start)*i/10)
		}
	}
	stack := make([]uint64, 20)
	for i := range stack {
		stack[i] = addrs[i%len(addrs)]
	}
	p := &Profiler{sym: s}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 1000; j++ {
			p.frames(stack, func(a uint64) string { return s.user(pid, maps, nil, a) })
		}
	}
}
