package testkit

import (
	"debug/elf"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBuildC: one compile serves every call of the same source and flags,
// and each call gets a copy of its own, named as asked, that it may delete.
func TestBuildC(t *testing.T) {
	src := "int main(void) { return 3; }\n"
	a, b := BuildC(t, "first", src, "-O1"), BuildC(t, "second name", src, "-O1")
	if filepath.Base(a) != "first" || filepath.Base(b) != "second name" || filepath.Dir(a) == filepath.Dir(b) {
		t.Fatalf("copies %q and %q", a, b)
	}
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	c := BuildC(t, "first", src, "-O1")
	for _, exe := range []string{b, c} {
		fi, err := os.Stat(exe)
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v", exe, fi, err)
		}
	}
	builds.mu.Lock()
	n := len(builds.m)
	builds.mu.Unlock()
	if n != 1 {
		t.Errorf("%d builds of one source", n)
	}
}

// TestBuildCError: a program that does not compile fails the test with
// what gcc said.
func TestBuildCError(t *testing.T) {
	RequireTools(t, "gcc")
	if _, err := compileC("gcc", []string{"int main(void) { return x; }\n"}, nil); err == nil || !strings.Contains(err.Error(), "undeclared") {
		t.Fatalf("compiling a wrong program: %v", err)
	}
}

// TestBuildCCached: with the object cache set, a program built once is
// served from it without the compiler (as in the kernel matrix's guests),
// and one built for arm64 is Debian's cross compiler's, static, with a
// USDT note from the host's sys/sdt.h.
func TestBuildCCached(t *testing.T) {
	cache := t.TempDir()
	t.Setenv(CacheEnv, cache)
	src := "#include <sys/sdt.h>\nint main(void) { STAP_PROBE1(tk, cached, 1); return 0; }\n"
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	ran := 0
	for _, arch := range []string{runtime.GOARCH, other} {
		t.Run(arch, func(t *testing.T) {
			t.Setenv(ArchEnv, arch)
			RequireCHeader(t, "sys/sdt.h", "systemtap-sdt-dev")
			exe := BuildC(t, "tk-cached", src, "-O1")
			f, err := elf.Open(exe)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
			if f.Machine != want || f.Section(".note.stapsdt") == nil {
				t.Fatalf("built %v with note %v, want %v with .note.stapsdt", f.Machine, f.Section(".note.stapsdt") != nil, want)
			}
			if arch != runtime.GOARCH {
				for _, p := range f.Progs {
					if p.Type == elf.PT_INTERP {
						t.Error("a cross-built program is not static")
					}
				}
			}
			// From the cache: no compiler on PATH, misses fail.
			t.Setenv("PATH", t.TempDir())
			t.Setenv(CachedOnlyEnv, "1")
			again := BuildC(t, "tk-cached", src, "-O1")
			a, _ := os.ReadFile(exe)
			b, _ := os.ReadFile(again)
			if len(a) == 0 || string(a) != string(b) {
				t.Error("the cached program differs")
			}
			ran++
		})
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != ran {
		t.Errorf("%d programs cached, want %d", len(entries), ran)
	}
}

// TestWorker: the worker answers each call after making it, and ends when
// stopped.
func TestWorker(t *testing.T) {
	w := StartWorker(t, BuildWorker(t, "tk-worker"))
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", w.Pid()))
	if err != nil || strings.TrimSpace(string(comm)) != "tk-worker" {
		t.Fatalf("comm %q (%v)", comm, err)
	}
	w.Call(t, 3)
	w.Call(t, 0)
	w.Stop()
	if !w.Cmd.ProcessState.Exited() || w.Cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("worker ended %v", w.Cmd.ProcessState)
	}
	w.Stop()
}

// TestGet: status, headers and the body as sent.
func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte("body"))
	}))
	defer srv.Close()
	code, header, body := Get(t, srv.URL+"/p")
	if code != http.StatusTeapot || header.Get("X-Path") != "/p" || body != "body" {
		t.Fatalf("got %d %v %q", code, header, body)
	}
	if code, body, err := TryGet(srv.URL); err != nil || code != http.StatusTeapot || body != "body" {
		t.Fatalf("TryGet: %d %q %v", code, body, err)
	}
	srv.Close()
	if _, _, err := TryGet(srv.URL); err == nil {
		t.Fatal("TryGet of a closed server: no error")
	}
}

// TestPoll: Poll reports whether the condition came true in time.
func TestPoll(t *testing.T) {
	n := 0
	if !Poll(WaitLimit, func() bool { n++; return n == 5 }) || n != 5 {
		t.Fatalf("a condition true at its fifth check: %d checks", n)
	}
	if Poll(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition never true held")
	}
}
