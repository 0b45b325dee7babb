package profile

import (
	"bytes"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/internal/procfs"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// testUnwinder is an unwinder on fresh kernel maps of the profiler's
// object, with a rows table of size rows and limits lim.
func testUnwinder(t *testing.T, size uint32, lim limits) *unwinder {
	t.Helper()
	testkit.RequireRoot(t)
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(profileObject))
	if err != nil {
		t.Fatal(err)
	}
	maps := map[string]*ebpf.Map{}
	for _, name := range []string{"rows", "procs"} {
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			t.Skipf("BPF maps cannot be created here: %v", err)
		}
		t.Cleanup(func() { m.Close() })
		maps[name] = m
	}
	log := slog.New(slog.DiscardHandler)
	u := newUnwinder(maps["rows"], maps["procs"], newSymbolizer(log), "/proc", nil)
	u.space, u.shares = newRowSpace(size), newShares(lim)
	return u
}

// sleeper starts a process running sleep, dynamically linked, and returns
// its pid and executable file mappings once libc is mapped.
func sleeper(t *testing.T) (int, []procfs.Mapping) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var maps []procfs.Mapping
	testkit.Eventually(t, "sleep to map libc", func() bool {
		maps, _ = readMaps("/proc", cmd.Process.Pid)
		return slices.ContainsFunc(maps, func(m procfs.Mapping) bool { return strings.Contains(m.Path, "libc") })
	})
	return cmd.Process.Pid, maps
}

// TestUnwinderLifetime: rows stay while any process maps their file, are
// released when the last one exits, and are reused; a user over its share
// leaves a file without rows, and the same file is loaded for root.
func TestUnwinderLifetime(t *testing.T) {
	u := testUnwinder(t, maxRows, rowLimits)
	p1, m1 := sleeper(t)
	p2, m2 := sleeper(t)
	if err := u.describe(p1, 0, m1); err != nil {
		t.Fatal(err)
	}
	one := u.stats()
	if one.used == 0 || one.files < 2 {
		t.Fatalf("after one process: %+v, want rows of sleep and libc", one)
	}
	if err := u.describe(p2, 0, m2); err != nil {
		t.Fatal(err)
	}
	if st := u.stats(); st.used != one.used || st.files != one.files {
		t.Fatalf("a second process of the same files: %+v, want %+v (shared)", st, one)
	}
	u.forget(p1)
	if st := u.stats(); st.used != one.used {
		t.Fatalf("one of two exited: %d rows, want %d", st.used, one.used)
	}
	u.forget(p2)
	if st := u.stats(); st.used != 0 || st.files != 0 || !slices.Equal(u.space.free, []extent{{0, maxRows}}) {
		t.Fatalf("both exited: %+v, free list %v; want everything free", st, u.space.free)
	}
	if u.sym.stats().files == 0 {
		t.Fatal("symbols went with the rows; they stay until the drain after the exit")
	}
	u.sym.forget(p1)
	u.sym.forget(p2)
	if st := u.sym.stats(); st.files != 0 || st.bytes != 0 {
		t.Fatalf("symbols after both are forgotten: %+v", st)
	}
	// Reused: described again, the rows start at the bottom again.
	if err := u.describe(p1, 0, m1); err != nil {
		t.Fatal(err)
	}
	if st := u.stats(); st.used != one.used {
		t.Fatalf("described again: %d rows, want %d", st.used, one.used)
	}
	for _, d := range u.described[p1] {
		if d.Count > 0 && d.First+d.Count > one.used {
			t.Errorf("mapping %+v is past the %d rows in use: freed rows not reused", d, one.used)
		}
	}
	u.forget(p1)

	// A user whose share is smaller than libc: libc is skipped for it,
	// and loaded when root's process maps it.
	small := testUnwinder(t, maxRows, limits{file: maxRows, user: 2000, users: 4000, total: maxRows})
	if err := small.describe(p1, 1000, m1); err != nil {
		t.Fatal(err)
	}
	st := small.stats()
	if st.skipped[skipUser] == 0 {
		t.Fatalf("a user over its share: %+v, want libc skipped for user_limit", st)
	}
	if st.used > 2000 {
		t.Fatalf("a user holds %d rows, over its share of 2000", st.used)
	}
	if err := small.describe(p2, 0, m2); err != nil {
		t.Fatal(err)
	}
	libc := false
	for _, d := range small.described[p2] {
		libc = libc || d.Count > 2000
	}
	if !libc {
		t.Errorf("root's process of the same libc has no rows for it: %+v", small.described[p2])
	}
	small.forget(p1)
	small.forget(p2)
	if st := small.stats(); st.used != 0 {
		t.Errorf("after both exited: %d rows in use", st.used)
	}
}

// TestLoadUnheld: a file read after every process mapping it was
// forgotten (its load outlived the process's exit) keeps nothing: no rows,
// no symbol table; and the process's late description is undone by
// forget.
func TestLoadUnheld(t *testing.T) {
	u := testUnwinder(t, maxRows, rowLimits)
	pid, maps := sleeper(t)
	for i := range maps {
		if m := &maps[i]; m.IsFile() {
			u.load(pid, 0, m)
		}
	}
	if st, sy := u.stats(), u.sym.stats(); st.used != 0 || st.files != 0 || sy.files != 0 {
		t.Fatalf("files read for no process: rows %+v, symbols %+v; want nothing kept", st, sy)
	}
	if err := u.describe(pid, 0, maps); err != nil {
		t.Fatal(err)
	}
	if st := u.stats(); st.used == 0 {
		t.Fatalf("described: %+v, want rows", st)
	}
	u.forget(pid)
	u.sym.forget(pid)
	if st, sy := u.stats(), u.sym.stats(); st.used != 0 || st.files != 0 || sy.files != 0 || sy.bytes != 0 {
		t.Fatalf("forgotten: rows %+v, symbols %+v; want nothing held", st, sy)
	}
}
