package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Veth is a veth pair between this network namespace (Host) and one the
// test made (Peer, inside NSPath).
type Veth struct {
	NSPath, Host, Peer, HostAddr, PeerAddr string
}

// VethNetns makes a network namespace holding one end of a veth pair whose
// other end stays here, with static addresses (198.18.0.0/15, the
// benchmarking range) and neighbours so that every packet sent goes out at
// once. Both go away when the test ends.
func VethNetns(t testing.TB) Veth {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	id := os.Getpid() % 100000
	ns := fmt.Sprintf("probe-veth-%d", id)
	v := Veth{NSPath: "/var/run/netns/" + ns, Host: fmt.Sprintf("pvh%d", id), Peer: fmt.Sprintf("pvp%d", id)}
	// A /30 of its own per process: 198.18.0.0 + 4*(pid mod 32768).
	off := 4 * (id % 32768)
	at := func(n int) string { return fmt.Sprintf("198.%d.%d.%d", 18+off>>16, off>>8&0xff, off&0xff+n) }
	v.HostAddr, v.PeerAddr = at(1), at(2)
	const hostMAC, peerMAC = "02:00:5e:10:00:01", "02:00:5e:10:00:02"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("creating a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", v.Host, "address", hostMAC, "type", "veth", "peer", "name", v.Peer, "address", peerMAC, "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", v.Host).Run() })
	ip("addr", "add", v.HostAddr+"/30", "dev", v.Host)
	ip("link", "set", v.Host, "up")
	ip("neigh", "replace", v.PeerAddr, "lladdr", peerMAC, "dev", v.Host, "nud", "permanent")
	ip("-n", ns, "addr", "add", v.PeerAddr+"/30", "dev", v.Peer)
	ip("-n", ns, "link", "set", v.Peer, "up")
	ip("-n", ns, "neigh", "replace", v.HostAddr, "lladdr", hostMAC, "dev", v.Peer, "nud", "permanent")
	return v
}

// InNetns runs f on a thread that entered the network namespace at path;
// the thread is thrown away afterwards.
func InNetns(t testing.TB, path string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("entering %s: %v", path, err)
	}
}
