package testkit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// builds holds the programs BuildC compiled, by compiler, flags and
// source: each is compiled once per test binary and kept in memory, so
// that nothing outlives the tests.
var builds struct {
	mu sync.Mutex
	m  map[string]*build
}

type build struct {
	once sync.Once
	exe  []byte
	err  error
}

// BuildC compiles the C program src with gcc and flags (the whole command
// line but the input and output: gcc FLAGS -o OUT IN) and returns the path
// of the executable, named name (and so its comm), in a fresh directory of
// the test's that others may read. The same sources and flags are compiled
// once per test binary; each call gets its own copy, which the test may
// rename, delete or run as another user. The test is skipped without gcc;
// a program that does not compile fails it.
func BuildC(t testing.TB, name, src string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, name)
	BuildCAt(t, exe, []string{src}, flags...)
	return exe
}

// BuildCAt is BuildC for a test that chooses where the executable goes
// (the file exe is created, or replaced) and for a program of several
// translation units, one source each.
func BuildCAt(t testing.TB, exe string, srcs []string, flags ...string) {
	t.Helper()
	RequireTools(t, "gcc")
	sum := sha256.Sum256([]byte(strings.Join(flags, "\x00") + "\x00\x00" + strings.Join(srcs, "\x00\x00")))
	key := hex.EncodeToString(sum[:])
	builds.mu.Lock()
	if builds.m == nil {
		builds.m = map[string]*build{}
	}
	b := builds.m[key]
	if b == nil {
		b = &build{}
		builds.m[key] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.exe, b.err = compileC(srcs, flags) })
	if b.err != nil {
		t.Fatalf("building %s: %v", exe, b.err)
	}
	if err := os.WriteFile(exe, b.exe, 0o755); err != nil {
		t.Fatal(err)
	}
}

// compileC runs gcc on srcs in a directory of its own and returns the
// executable.
func compileC(srcs []string, flags []string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "testkit-cc")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "prog")
	args := append(append([]string(nil), flags...), "-o", out)
	for i, src := range srcs {
		in := filepath.Join(dir, fmt.Sprintf("prog%d.c", i))
		if err := os.WriteFile(in, []byte(src), 0o600); err != nil {
			return nil, err
		}
		args = append(args, in)
	}
	if msg, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc %s: %w\n%s", strings.Join(args, " "), err, msg)
	}
	return os.ReadFile(out)
}

// RequireCHeader skips the test unless gcc finds header (as in #include
// <header>); pkg names the Debian package that has it.
func RequireCHeader(t testing.TB, header, pkg string) {
	t.Helper()
	RequireTools(t, "gcc")
	cmd := exec.Command("gcc", "-fsyntax-only", "-x", "c", "-")
	cmd.Stdin = strings.NewReader("#include <" + header + ">\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("%s is missing (Debian's %s): %s", header, pkg, out)
	}
}
