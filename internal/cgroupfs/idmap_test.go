package cgroupfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// testMount is the cgroup2 mount, or a skip.
func testMount(t *testing.T) string {
	t.Helper()
	mount, err := Mount("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no cgroup2 hierarchy: %v", err)
	}
	return mount
}

func mkCgroup(t *testing.T, path string) uint64 {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Skipf("creating a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(path) })
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func runIDMap(t *testing.T, im *IDMap, mount string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- im.Run(ctx, mount) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestIDMapHash creates and removes cgroups, some matching, and checks
// that the hash map holds exactly the matching ones that exist, including
// one nested below a new cgroup and one there before the watch started.
func TestIDMapHash(t *testing.T) {
	mount := testMount(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 8, MaxEntries: 1024})
	if err != nil {
		t.Skipf("creating a map: %v", err)
	}
	defer m.Close()
	base := filepath.Join(mount, fmt.Sprintf("probe-idmap-%d", os.Getpid()))
	mkCgroup(t, base)
	before := mkCgroup(t, filepath.Join(base, "match-before"))

	im, err := NewIDMap(m, "hash", []string{`/probe-idmap-\d+/match-`, `/deep/leaf$`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	runIDMap(t, im, mount)
	in := func(id uint64) func() bool {
		return func() bool { var v uint64; return m.Lookup(id, &v) == nil && v == 1 }
	}
	gone := func(id uint64) func() bool {
		return func() bool { var v uint64; return errors.Is(m.Lookup(id, &v), ebpf.ErrKeyNotExist) }
	}
	testkit.Eventually(t, "the cgroup that existed before", in(before))

	for round := range 20 {
		a := mkCgroup(t, filepath.Join(base, fmt.Sprintf("match-%d", round)))
		other := mkCgroup(t, filepath.Join(base, fmt.Sprintf("other-%d", round)))
		mid := filepath.Join(base, fmt.Sprintf("other-%d", round), "deep")
		mkCgroup(t, mid)
		leaf := mkCgroup(t, filepath.Join(mid, "leaf"))
		testkit.Eventually(t, "a new matching cgroup", in(a))
		testkit.Eventually(t, "a nested matching cgroup", in(leaf))
		if !gone(other)() {
			t.Fatalf("round %d: a cgroup matching no regexp is in the map", round)
		}
		for _, p := range []string{filepath.Join(mid, "leaf"), mid, filepath.Join(base, fmt.Sprintf("match-%d", round))} {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		testkit.Eventually(t, "a removed cgroup to leave the map", gone(a))
		testkit.Eventually(t, "a removed nested cgroup to leave the map", gone(leaf))
	}
	var n int
	it := m.Iterate()
	var k, v uint64
	for it.Next(&k, &v) {
		n++
	}
	if n != 1 {
		t.Errorf("map holds %d cgroups, want 1 (the one made before)", n)
	}
}

// TestIDMapCgrpStorage sets a cgrp_storage map through cgroup fds.
func TestIDMapCgrpStorage(t *testing.T) {
	mount := testMount(t)
	// Local storage maps need BTF for their key and value.
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Type: ebpf.CgroupStorage, KeySize: 4, ValueSize: 8, Flags: unix.BPF_F_NO_PREALLOC,
		Key:   &btf.Int{Name: "u32", Size: 4},
		Value: &btf.Int{Name: "u64", Size: 8},
	})
	if err != nil {
		t.Skipf("creating a cgrp_storage map: %v", err)
	}
	defer m.Close()
	im, err := NewIDMap(m, "cgrp_storage", []string{`/probe-cgstore-\d+/yes$`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	runIDMap(t, im, mount)
	base := filepath.Join(mount, fmt.Sprintf("probe-cgstore-%d", os.Getpid()))
	mkCgroup(t, base)
	yes, no := filepath.Join(base, "yes"), filepath.Join(base, "no")
	mkCgroup(t, yes)
	mkCgroup(t, no)
	value := func(path string) (uint64, error) {
		dir, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		defer dir.Close()
		var v uint64
		err = m.Lookup(uint32(dir.Fd()), &v)
		return v, err
	}
	testkit.Eventually(t, "the matching cgroup's storage", func() bool { v, err := value(yes); return err == nil && v == 1 })
	if v, err := value(no); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("a cgroup matching no regexp has storage %d (%v)", v, err)
	}
}

func TestNewIDMapErrors(t *testing.T) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Skipf("creating a map: %v", err)
	}
	defer m.Close()
	for _, tc := range []struct {
		typ     string
		regexps []string
		want    string
	}{
		{"hash", []string{"x"}, "a hash map needs 8-byte keys, it has 4"},
		{"cgrp_storage", []string{"x"}, "needs a BPF_MAP_TYPE_CGRP_STORAGE map"},
		{"array", []string{"x"}, `unknown type "array"`},
	} {
		if _, err := NewIDMap(m, tc.typ, tc.regexps, nil); err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.typ, err, tc.want)
		}
	}
}

// TestIDMapBurst creates and removes cgroups from several goroutines at
// once, nested and flat, and checks that the map ends with exactly the
// matching cgroups that still exist.
func TestIDMapBurst(t *testing.T) {
	mount := testMount(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 8, MaxEntries: 4096})
	if err != nil {
		t.Skipf("creating a map: %v", err)
	}
	defer m.Close()
	base := filepath.Join(mount, fmt.Sprintf("probe-burst-%d", os.Getpid()))
	mkCgroup(t, base)
	im, err := NewIDMap(m, "hash", []string{`/probe-burst-\d+/w\d+/keep`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	runIDMap(t, im, mount)

	const workers, each = 8, 25
	kept := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := filepath.Join(base, fmt.Sprintf("w%d", w))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Error(err)
				return
			}
			for i := range each {
				keep := filepath.Join(dir, fmt.Sprintf("keep%d", i))
				gone := filepath.Join(dir, fmt.Sprintf("keep-gone%d", i))
				for _, p := range []string{keep, gone, filepath.Join(gone, "child")} {
					if err := os.Mkdir(p, 0o755); err != nil {
						t.Error(err)
						return
					}
				}
				var st syscall.Stat_t
				if err := syscall.Stat(keep, &st); err != nil {
					t.Error(err)
					return
				}
				kept[w] = append(kept[w], st.Ino)
				_ = os.Remove(filepath.Join(gone, "child"))
				_ = os.Remove(gone)
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for w := range workers {
			dir := filepath.Join(base, fmt.Sprintf("w%d", w))
			for i := range each {
				_ = os.Remove(filepath.Join(dir, fmt.Sprintf("keep%d", i)))
			}
			_ = os.Remove(dir)
		}
	})
	want := map[uint64]bool{}
	for _, ids := range kept {
		for _, id := range ids {
			want[id] = true
		}
	}
	var got map[uint64]bool
	testkit.Eventually(t, "the map to hold exactly the kept cgroups", func() bool {
		got = map[uint64]bool{}
		var k, v uint64
		it := m.Iterate()
		for it.Next(&k, &v) {
			got[k] = true
		}
		if len(got) != len(want) {
			return false
		}
		for id := range want {
			if !got[id] {
				return false
			}
		}
		return true
	})
	if len(want) != workers*each {
		t.Fatalf("made %d cgroups, want %d", len(want), workers*each)
	}
}
