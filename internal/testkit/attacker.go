package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Attacker is an unprivileged local user the test creates (useradd) and
// removes at its end (userdel -r), to run attacks against the exporter as
// someone who is not root would.
type Attacker struct {
	Name     string
	UID, GID uint32
	// Home is the user's own directory, writable by it alone.
	Home string
}

// NewAttacker creates a fresh unprivileged user with a home directory. The
// test is skipped when it does not run as root or useradd is missing.
func NewAttacker(t testing.TB) *Attacker {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "useradd", "userdel")
	var b [4]byte
	rand.Read(b[:])
	name := "pxatk" + hex.EncodeToString(b[:])
	if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		// Whatever the user still runs goes first: userdel refuses a
		// logged-in user.
		exec.Command("pkill", "-KILL", "-u", name).Run()
		if out, err := exec.Command("userdel", "--remove", "--force", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	a := &Attacker{Name: name, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	// Home directories may be world-readable by default; the attacker's
	// files must be reachable by programs it runs, nothing more.
	if err := os.Chmod(a.Home, 0o755); err != nil {
		t.Fatal(err)
	}
	return a
}

// Command is name with args, to be run as the attacker: its uid and gid,
// no supplementary groups, its home as working directory and HOME.
func (a *Attacker) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = a.Home
	cmd.Env = []string{"HOME=" + a.Home, "PATH=/usr/local/bin:/usr/bin:/bin", "USER=" + a.Name, "TMPDIR=/tmp"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: a.UID, Gid: a.GID, Groups: []uint32{}},
		Setpgid:    true,
	}
	return cmd
}

// Run runs a shell script as the attacker and fails the test if it fails;
// it returns what the script printed.
func (a *Attacker) Run(t testing.TB, script string) string {
	t.Helper()
	out, err := a.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("as %s: %s: %v\n%s", a.Name, script, err, out)
	}
	return string(out)
}

// Start starts a command as the attacker; it is killed, with its process
// group, when the test ends.
func (a *Attacker) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := a.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("as %s: %s: %v", a.Name, name, err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

// WriteFile writes data to a file the attacker owns, at path, with mode.
// The parent directory must exist.
func (a *Attacker) WriteFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, int(a.UID), int(a.GID)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Secret writes a root-only file (mode 0600, owned by root) holding a
// unique marker, in a directory only root can enter, and returns its path
// and the marker: tests assert the marker never shows in any output.
func Secret(t testing.TB) (path, marker string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	rand.Read(b[:])
	marker = "secret_" + hex.EncodeToString(b[:])
	path = filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%s\n0 10 %s\n", marker, marker)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, marker
}

// NotContains fails the test if any of outputs holds marker.
func NotContains(t testing.TB, marker string, outputs map[string]string) {
	t.Helper()
	for what, s := range outputs {
		if strings.Contains(s, marker) {
			t.Errorf("%s holds the secret %q", what, marker)
		}
	}
}
