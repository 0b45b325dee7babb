package userspace

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/probe-exporter/probe_exporter/targets"
)

// TestDispatcherLoads: the dispatcher passes the verifier and accepts the
// user's program as tail call target, in the initial pid namespace and in
// a child one, with and without a target_pids map to fill.
func TestDispatcherLoads(t *testing.T) {
	user, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Kprobe,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		t.Skipf("cannot load BPF programs: %v", err)
	}
	defer user.Close()
	selected, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 1, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer selected.Close()
	tpids, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer tpids.Close()
	for _, tc := range []struct {
		name  string
		ns    targets.FileKey
		tpids *ebpf.Map
	}{
		{"initial pid namespace", targets.FileKey{}, nil},
		{"initial pid namespace, target_pids", targets.FileKey{}, tpids},
		{"child pid namespace", targets.FileKey{Dev: 4, Ino: 4026532000}, nil},
		{"child pid namespace, target_pids", targets.FileKey{Dev: 4, Ino: 4026532000}, tpids},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := newDispatcher(user, ebpf.AttachNone, targets.Selected{Map: selected, Slot: 3, PIDNamespace: tc.ns}, tc.tpids)
			if err != nil {
				t.Fatal(err)
			}
			d.Close()
		})
	}
}

// TestFileForVanished: no attach is attempted for a process without an
// executable or one whose /proc entry is gone; both are races (errGone).
func TestFileForVanished(t *testing.T) {
	gonePID := 1 << 30 // above pid_max
	for _, tc := range []struct {
		name    string
		p       targets.Process
		section string
	}{
		{"empty exe", targets.Process{PID: gonePID, Root: "/proc/1073741824/root"}, ""},
		{"library of a vanished process", targets.Process{PID: gonePID, Exe: "/bin/x", Root: "/proc/1073741824/root"}, "libc.so.6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, err := fileFor(tc.p, tc.section)
			if !gone(err) {
				t.Fatalf("fileFor = %v, %v; want a race", path, err)
			}
		})
	}
}
