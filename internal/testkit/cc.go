package testkit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
//
// For the kernel matrix (test/kernels), programs go through the object
// cache as BPF objects do (CompileBPF): with CacheEnv set, each is kept
// there under a hash of its compiler, flags and sources, so that a guest
// without a compiler runs what the host built (a miss under CachedOnlyEnv
// fails the test unless the compiler is at hand). With ArchEnv naming
// another architecture than the test binary's, the program is built with
// Debian's cross compiler for it (gcc-aarch64-linux-gnu), statically. In
// prepare mode (PrepareEnv) BuildCAt does not skip: the test goes on to
// its other builds and calls SkipIfPreparing before it runs anything.
func BuildCAt(t testing.TB, exe string, srcs []string, flags ...string) {
	t.Helper()
	// The key is what the program is for, so that the host preparing the
	// cache of another architecture's guest and that guest agree on it.
	sum := sha256.Sum256([]byte(bpfArch() + "\x00" + strings.Join(flags, "\x00") + "\x00\x00" + strings.Join(srcs, "\x00\x00")))
	key := hex.EncodeToString(sum[:])
	cc, flags := cCompiler(flags)
	var cached string
	if cache := os.Getenv(CacheEnv); cache != "" {
		cached = filepath.Join(cache, "c-"+key[:32])
		if b, err := os.ReadFile(cached); err == nil {
			if err := os.WriteFile(exe, b, 0o755); err != nil {
				t.Fatal(err)
			}
			return
		}
		if _, err := exec.LookPath(cc); err != nil && os.Getenv(CachedOnlyEnv) != "" {
			t.Fatalf("program %s is not in %s=%s (%s is set) and %s is missing: prepare the cache on the host first", cached, CacheEnv, cache, CachedOnlyEnv, cc)
		}
	}
	RequireTools(t, cc)
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
	b.once.Do(func() { b.exe, b.err = compileC(cc, srcs, flags) })
	if b.err != nil {
		t.Fatalf("building %s: %v", exe, b.err)
	}
	if cached != "" && os.Getenv(CachedOnlyEnv) == "" {
		if err := writeAtomic(cached, b.exe); err != nil {
			t.Fatalf("caching %s: %v", exe, err)
		}
	}
	if err := os.WriteFile(exe, b.exe, 0o755); err != nil {
		t.Fatal(err)
	}
}

// crossCompilers are Debian's cross compilers by Go architecture.
var crossCompilers = map[string]string{"arm64": "aarch64-linux-gnu-gcc", "amd64": "x86_64-linux-gnu-gcc"}

// cCompiler is the compiler BuildCAt runs and its flags: gcc, or for
// another architecture (ArchEnv) its cross compiler, linking statically
// and finding the host's architecture-neutral sys/sdt.h (systemtap-sdt-dev
// installs it only for the host).
func cCompiler(flags []string) (string, []string) {
	arch := bpfArch()
	if arch == runtime.GOARCH {
		return "gcc", flags
	}
	cc := crossCompilers[arch]
	if cc == "" {
		cc = arch + "-linux-gnu-gcc"
	}
	out := append(append([]string(nil), flags...), "-static")
	if hostSDT() != "" {
		out = append(out, "-idirafter", sdtIncludeDir)
	}
	return cc, out
}

// sdtIncludeDir is where cross builds find sys/sdt.h: a directory holding
// only it and its configuration header, made by compileC.
const sdtIncludeDir = "@sdt"

// compileC runs cc on srcs in a directory of its own and returns the
// executable.
func compileC(cc string, srcs []string, flags []string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "testkit-cc")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "prog")
	var args []string
	for _, f := range flags {
		if f == sdtIncludeDir {
			sdt := filepath.Join(dir, "sdt")
			if err := copySDT(sdt); err != nil {
				return nil, err
			}
			f = sdt
		}
		args = append(args, f)
	}
	args = append(args, "-o", out)
	for i, src := range srcs {
		in := filepath.Join(dir, fmt.Sprintf("prog%d.c", i))
		if err := os.WriteFile(in, []byte(src), 0o600); err != nil {
			return nil, err
		}
		args = append(args, in)
	}
	if msg, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", cc, strings.Join(args, " "), err, msg)
	}
	return os.ReadFile(out)
}

// hostSDT is the directory of the host's sys/sdt.h (Debian's
// systemtap-sdt-dev puts it under the host's multiarch include
// directory), or "".
func hostSDT() string {
	dirs, _ := filepath.Glob("/usr/include/*/sys/sdt.h")
	for _, h := range append([]string{"/usr/include/sys/sdt.h"}, dirs...) {
		if _, err := os.Stat(h); err == nil {
			return filepath.Dir(h)
		}
	}
	return ""
}

// copySDT copies the host's sys/sdt.h and sys/sdt-config.h under dir/sys.
func copySDT(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "sys"), 0o755); err != nil {
		return err
	}
	src := hostSDT()
	for _, h := range []string{"sdt.h", "sdt-config.h"} {
		b, err := os.ReadFile(filepath.Join(src, h))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "sys", h), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// SkipIfPreparing skips the test in the kernel matrix's prepare mode
// (PrepareEnv): the test calls it once everything it compiles is built
// (and so cached for the guest), before it runs anything.
func SkipIfPreparing(t testing.TB) {
	t.Helper()
	if os.Getenv(PrepareEnv) != "" {
		t.Skip("what the test builds is cached; preparing only")
	}
}

// RequireCHeader skips the test unless the C compiler BuildC runs finds
// header (as in #include <header>); pkg names the Debian package that has
// it. Where programs come from the object cache only (CachedOnlyEnv, the
// kernel matrix's guests) the host checked it when it built them.
func RequireCHeader(t testing.TB, header, pkg string) {
	t.Helper()
	if os.Getenv(CachedOnlyEnv) != "" {
		return
	}
	cc, _ := cCompiler(nil)
	RequireTools(t, cc)
	if header == "sys/sdt.h" && cc != "gcc" {
		if hostSDT() == "" {
			t.Skipf("%s is missing (Debian's %s)", header, pkg)
		}
		return
	}
	cmd := exec.Command(cc, "-fsyntax-only", "-x", "c", "-")
	cmd.Stdin = strings.NewReader("#include <" + header + ">\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("%s is missing (Debian's %s): %s", header, pkg, out)
	}
}
