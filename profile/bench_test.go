package profile

import (
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/elfread"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
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
	s := newSymbolizer(slog.New(slog.DiscardHandler))
	// Load the tables as refresh would (symbolizing only looks them up),
	// held for the process as describe holds them.
	var ids []fileID
	for i := range maps {
		if m := &maps[i]; m.IsFile() {
			ids = append(ids, idOf(m))
		}
	}
	s.hold(pid, ids)
	for i := range maps {
		if m := &maps[i]; m.IsFile() {
			if f, err := safeopen.Mapped("/proc", pid, *m, safeopen.Rules{}); err == nil {
				if ef, err := elfread.NewFile(f, uint64(f.Stat.Size)); err == nil {
					if t, err := loadSymbols(ef); err == nil {
						s.store(idOf(m), m.Path, t, 0, false)
					}
				}
				f.Close()
			}
		}
	}
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
			p.frames(stack, func(a uint64) string { return s.user(maps, nil, a) })
		}
	}
}
