package procfs

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestParseMaps(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       Mapping
	}{
		{"file", "55d0c0a00000-55d0c0a02000 r-xp 00002000 08:01 1234                       /usr/bin/python3.11",
			Mapping{Start: 0x55d0c0a00000, End: 0x55d0c0a02000, Perms: "r-xp", Offset: 0x2000, Major: 8, Minor: 1, Inode: 1234, Path: "/usr/bin/python3.11"}},
		{"spaces", "7f0000000000-7f0000001000 r--s 00000000 fd:1a 99     /tmp/a  b c ",
			Mapping{Start: 0x7f0000000000, End: 0x7f0000001000, Perms: "r--s", Major: 0xfd, Minor: 0x1a, Inode: 99, Path: "/tmp/a  b c "}},
		{"deleted", "7f0000000000-7f0000001000 r-xp 00001000 00:2c 7 /usr/lib/libx.so (deleted)",
			Mapping{Start: 0x7f0000000000, End: 0x7f0000001000, Perms: "r-xp", Offset: 0x1000, Minor: 0x2c, Inode: 7, Path: "/usr/lib/libx.so", Deleted: true}},
		{"anonymous", "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ",
			Mapping{Start: 0x7f0000000000, End: 0x7f0000001000, Perms: "rw-p"}},
		{"anonymous without padding", "7f0000000000-7f0000001000 rw-p 00000000 00:00 0",
			Mapping{Start: 0x7f0000000000, End: 0x7f0000001000, Perms: "rw-p"}},
		{"vdso", "7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]",
			Mapping{Start: 0x7ffd1000, End: 0x7ffd3000, Perms: "r-xp", Path: "[vdso]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMaps(strings.NewReader(tc.line + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{
		"garbage",
		"7f00-7f01 r-xp 0 08:01",
		"7f00 r-xp 0 08:01 1 /x",
		"7f00-zz r-xp 0 08:01 1 /x",
		"7f00-7f01 r-xp 0 0801 1 /x",
		"7f00-7f01 r-xp 0 08:01 inode /x",
	} {
		if _, err := ParseMaps(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "malformed maps line") {
			t.Errorf("%q: %v, want malformed", bad, err)
		}
	}
}

// TestOwnMaps reads this test process's own mappings: its executable,
// a file whose name has spaces, and a file deleted while mapped, which
// MapFile still reaches.
func TestOwnMaps(t *testing.T) {
	dir := t.TempDir()
	spaced := mapTestFile(t, filepath.Join(dir, "with  two spaces "), "spaced content")
	deleted := mapTestFile(t, filepath.Join(dir, "gone"), "deleted content")
	if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	maps, err := ReadMaps("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	find := func(addr uintptr) Mapping {
		t.Helper()
		for _, m := range maps {
			if uint64(addr) >= m.Start && uint64(addr) < m.End {
				return m
			}
		}
		t.Fatalf("no mapping holds 0x%x", addr)
		return Mapping{}
	}
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		t.Fatal(err)
	}
	var text bool
	for _, m := range maps {
		if m.Path == exe && m.Executable() {
			text = true
			if m.Inode != st.Ino || m.Major != unix.Major(st.Dev) || m.Minor != unix.Minor(st.Dev) || !m.IsFile() || m.Deleted {
				t.Errorf("executable mapping %+v does not match stat dev %d:%d ino %d", m, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
			}
		}
	}
	if !text {
		t.Errorf("no executable mapping of %s in %+v", exe, maps)
	}

	m := find(spaced)
	if m.Path != filepath.Join(dir, "with  two spaces ") || m.Deleted || m.Perms != "r--s" {
		t.Errorf("spaced mapping: %+v", m)
	}
	if got, err := os.ReadFile(MapFile("/proc", os.Getpid(), m)); err != nil || string(got) != "spaced content" {
		t.Errorf("reading spaced file through the process's root: %q %v", got, err)
	}

	m = find(deleted)
	if m.Path != filepath.Join(dir, "gone") || !m.Deleted {
		t.Errorf("deleted mapping: %+v", m)
	}
	if got, err := os.ReadFile(MapFile("/proc", os.Getpid(), m)); err != nil || string(got) != "deleted content" {
		t.Errorf("reading deleted file through map_files: %q %v", got, err)
	}
}

// mapTestFile creates path with content, maps it shared and read-only, and
// returns the address.
func mapTestFile(t *testing.T, path, content string) uintptr {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, len(content), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(b) })
	if !bytes.Equal(b, []byte(content)) {
		t.Fatal("mapped content differs")
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

func TestReadSelf(t *testing.T) {
	pid := os.Getpid()
	p, err := Read("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	comm, _ := os.ReadFile("/proc/self/comm")
	if p.PID != pid || p.Exe != exe || p.ExeInRoot != exe || p.Comm != strings.TrimSpace(string(comm)) || p.StartTime == 0 ||
		!strings.HasPrefix(p.Cmdline, os.Args[0]) || p.Root != filepath.Join("/proc", strconv.Itoa(pid), "root") {
		t.Errorf("%+v", p)
	}
	if p.Dir() != Dir("/proc", pid) || p.ExePath() != "/proc/"+strconv.Itoa(pid)+"/exe" || p.HostPath("/etc/passwd") != HostPath("/proc", pid, "/etc/passwd") {
		t.Errorf("paths of %+v", p)
	}
	if !p.Alive() {
		t.Error("this process is not alive")
	}
	reused := p
	reused.StartTime++
	if reused.Alive() {
		t.Error("a process with another start time is alive")
	}
	if n := NSPID("/proc", pid); n == 0 {
		t.Error("no NSpid")
	}
	pids, err := PIDs("/proc")
	if err != nil || !slices.Contains(pids, pid) {
		t.Errorf("PIDs: %v without %d", err, pid)
	}
	if _, err := Read("/proc", 0); err == nil {
		t.Error("pid 0 read")
	}
}

// TestInRoot: the executable of a chrooted process as it sees it.
func TestInRoot(t *testing.T) {
	for _, tc := range []struct{ path, root, want string }{
		{"/usr/bin/python3", "/", "/usr/bin/python3"},
		{"/srv/jail/usr/bin/python3", "/srv/jail", "/usr/bin/python3"},
		{"/srv/jail", "/srv/jail", "/srv/jail"},
		{"/srv/jailbreak/x", "/srv/jail", "/srv/jailbreak/x"},
		{"/usr/sbin/sshd", "/run/sshd", "/usr/sbin/sshd"}, // chroot(2) after exec
		{"/x", "", "/x"},
	} {
		if got := inRoot(tc.path, tc.root); got != tc.want {
			t.Errorf("inRoot(%q, %q) = %q, want %q", tc.path, tc.root, got, tc.want)
		}
	}
}

func TestParseStat(t *testing.T) {
	rest := " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20"
	st, err := parseStat([]byte("17 (a) b) (c)" + rest))
	if err != nil || st.state != 'S' || st.startTime != 4242 {
		t.Errorf("%+v %v", st, err)
	}
	for _, bad := range []string{"17 (a", "17 (a) S 1", "17 (a) S" + strings.Repeat(" x", 20)} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestUIDs(t *testing.T) {
	uids, err := UIDs("/proc", os.Getpid())
	if err != nil || len(uids) != 4 || uids[0] != uint32(os.Getuid()) || uids[1] != uint32(os.Geteuid()) {
		t.Fatalf("%v %v", uids, err)
	}
}
