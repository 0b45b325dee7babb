package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// stapPort is the port TestKernelStap's exporter listens on: systemtap
// module names are probe_exporter_PORT_NAME, and test/kernels/run.sh
// compiles the modules under the same names (STAP_PORT there).
const stapPort = "19922"

// stapPrebuiltEnv names a directory test/kernels/run.sh filled for this
// kernel: build/ (the MODULE.ko files stap -m left), systemtap/ (a
// SYSTEMTAP_DIR with stap's caches for the kernel) and runtime/ (the
// systemtap runtime they were built with). stapSkipEnv is why it built
// none for this kernel.
const (
	stapPrebuiltEnv = "PROBE_EXPORTER_STAP_PREBUILT"
	stapSkipEnv     = "PROBE_EXPORTER_STAP_SKIP"
	// stapCompileEnv set: leave the prebuilt modules out, so that stap
	// compiles each script in the guest and the 503 path is held through
	// a compile of minutes (a measurement for bench/README.md, not in
	// the default test list).
	stapCompileEnv = "PROBE_EXPORTER_STAP_COMPILE"
)

// readOnSignal is the workload of TestKernelStap: pinned to CPU 0, it
// prints its thread id, waits for SIGUSR1 (making no read syscall), then
// makes n reads of /dev/zero from that thread and exits.
func readOnSignal(n int) int {
	var set unix.CPUSet
	set.Set(0)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintln(os.Stderr, "sched_setaffinity:", err)
		return 3
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	fmt.Printf("%d\n", unix.Gettid())
	<-sig
	return readZero(n)
}

// stapSkip says why systemtap cannot build and load modules here, or "".
func stapSkip() string {
	if _, err := exec.LookPath("stap"); err != nil {
		return "systemtap is not installed"
	}
	if _, err := os.Stat("/proc/modules"); err != nil {
		return "this kernel has no loadable module support (no /proc/modules)"
	}
	if why := os.Getenv(stapSkipEnv); why != "" {
		return why
	}
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return err.Error()
	}
	if _, err := os.Stat(filepath.Join("/lib/modules", strings.TrimSpace(string(rel)), "build")); err != nil {
		return "no kernel headers for " + strings.TrimSpace(string(rel)) + " (linux-headers package)"
	}
	return ""
}

// stapModuleLoaded reports whether the module is in /proc/modules (what
// lsmod lists) and /proc/systemtap (where its procfs files are).
func stapModuleLoaded(t *testing.T, module string) (lsmod, procfs bool) {
	t.Helper()
	data, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, module+" ") {
			lsmod = true
		}
	}
	_, err = os.Stat(filepath.Join("/proc/systemtap", module))
	return lsmod, err == nil
}

// stapCounts reads example.stp's count{tid,cpu} series of one thread.
func stapCounts(t *testing.T, body string, tid int) map[string]float64 {
	t.Helper()
	re := regexp.MustCompile(`^count\{tid="` + strconv.Itoa(tid) + `",cpu="(\d+)"\} (\d+)$`)
	out := map[string]float64{}
	for _, l := range strings.Split(body, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			out[m[1]] = v
		}
	}
	return out
}

// stapCopyTree copies a directory tree (regular files and directories).
func stapCopyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// stapCacheEntries lists what systemtap cached of the kernel's side:
// tracepoint and type queries and autoconf results (with -m, which the
// exporter gives for the module name, stap 4.8 caches no module).
func stapCacheEntries(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_hash.log") {
			out[filepath.Base(p)] = true
		}
		return nil
	})
	return out
}

// stapioOf finds the stapio process of a systemtap module.
func stapioOf(module string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == "stapio" && strings.Contains(string(cmdline), module) {
			return pid
		}
	}
	return 0
}

// TestKernelStap runs the stap-exporter man page's example, a script of
// every prometheus_dump_arrayN arity systemtap's tapset compiles and an
// autostart script under the built binary with real systemtap modules:
// the first request answers 503 "refresh" with Retry-After, then the
// example counts exactly the reads of a helper thread pinned to CPU 0,
// the keepalive unloads the module, an autostart script killed from
// outside is started again (after SIGKILL too, which leaves its module
// loaded for the exporter to unload), and module names are
// probe_exporter_PORT_NAME.
// Kernels systemtap cannot build for (this machine's has no modules) skip
// with the reason; the kernel matrix runs it on Debian's 6.1 under qemu
// with the modules test/kernels/run.sh compiled on the host, which the
// exporter loads with staprun as it does any MODULE.ko stap -m left.
func TestKernelStap(t *testing.T) {
	if os.Getenv(testkit.PrepareEnv) != "" {
		t.Skip("no BPF objects to prepare: test/kernels/run.sh compiles the systemtap modules itself")
	}
	if why := stapSkip(); why != "" {
		if attachRequired("stap") {
			t.Fatalf("this kernel is listed as running systemtap scripts, but: %s", why)
		}
		t.Skip(why)
	}
	dir := t.TempDir()
	for _, src := range []string{"../../examples/scripts/example.stp", "testdata/stap/arrays-autostart.stp"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// stap needs a writable cache: a copy of the prebuilt one, if any.
	stapDir := filepath.Join(t.TempDir(), "systemtap")
	compile := 15 * time.Minute // a cold compile on a slow machine
	prebuilt := 0
	if pre := os.Getenv(stapPrebuiltEnv); pre != "" {
		stapCopyTree(t, filepath.Join(pre, "systemtap"), stapDir)
		if _, err := os.Stat(filepath.Join(pre, "runtime")); err == nil {
			t.Setenv("SYSTEMTAP_RUNTIME", filepath.Join(pre, "runtime"))
		}
		// The modules stap -m left in run.sh's build directory, as it
		// leaves them in the scripts directory: newer than the
		// scripts, so the exporter loads them with staprun.
		kos, _ := filepath.Glob(filepath.Join(pre, "build", "*.ko"))
		if os.Getenv(stapCompileEnv) != "" {
			kos = nil
		}
		for _, ko := range kos {
			data, err := os.ReadFile(ko)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(ko)), data, 0o644); err != nil {
				t.Fatal(err)
			}
			prebuilt++
		}
		if prebuilt > 0 {
			compile = 5 * time.Minute
		}
	}
	t.Setenv("SYSTEMTAP_DIR", stapDir)
	cached := stapCacheEntries(t, stapDir)

	addr := "127.0.0.1:" + stapPort
	// A start wait shorter than any module load: the first request
	// answers 503 however fast the module is there.
	exporter := startExporter(t, func() bool { return serves(addr) }, "-p", stapPort, "-k", "20", "-s", dir, "--scripts.start-wait=10ms")
	base := "http://" + addr
	example := "probe_exporter_" + stapPort + "_example"
	arrays := "probe_exporter_" + stapPort + "_arrays_autostart"

	// The first request starts stap and, while it builds, answers 503.
	start := time.Now()
	code, hdr, body := testkit.Get(t, base+"/example.stp")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "refresh") {
		t.Fatalf("first request: %d Retry-After=%q %q, want 503 asking to refresh", code, hdr.Get("Retry-After"), body)
	}
	body = stapWaitOK(t, base+"/example.stp", compile)
	var added []string
	for name := range stapCacheEntries(t, stapDir) {
		if !cached[name] {
			added = append(added, name)
		}
	}
	t.Logf("example.stp: first request to 200 in %.1f s (%d modules built by run.sh; systemtap cache: %d entries, %d added %v)", time.Since(start).Seconds(), prebuilt, len(cached), len(added), added)
	if lsmod, procfs := stapModuleLoaded(t, example); !lsmod || !procfs {
		t.Fatalf("module %s: in /proc/modules %v, in /proc/systemtap %v", example, lsmod, procfs)
	}

	t.Run("stap_example-counts", func(t *testing.T) {
		const reads = 1000
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROBE_E2E_COMM=e2e_stap", "PROBE_E2E_CALLS="+strconv.Itoa(reads), "PROBE_E2E_SYSCALL=read-on-signal")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		tid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("helper printed %q", line)
		}
		before := stapCounts(t, stapWaitOK(t, base+"/example.stp", time.Minute), tid)
		cmd.Process.Signal(syscall.SIGUSR1)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			body := stapWaitOK(t, base+"/example.stp", time.Minute)
			after := stapCounts(t, body, tid)
			if after["0"] == before["0"]+reads {
				for cpu, v := range after {
					if cpu != "0" && v != before[cpu] {
						t.Errorf("thread %d pinned to CPU 0 counted on CPU %s: %v, was %v", tid, cpu, v, before[cpu])
					}
				}
				t.Logf("count{tid=\"%d\",cpu=\"0\"} %v, was %v", tid, after["0"], before["0"])
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("want count{tid=\"%d\",cpu=\"0\"} %v (%v before %d reads), got %v in\n%s", tid, before["0"]+reads, before["0"], reads, after, tail(body, 20))
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("stap_arrays-autostart", func(t *testing.T) {
		if lsmod, procfs := stapModuleLoaded(t, arrays); !lsmod || !procfs {
			// Autostart: running before any request.
			testkit.EventuallyWithin(t, "the autostart module "+arrays+" to load", compile, func() bool {
				lsmod, procfs := stapModuleLoaded(t, arrays)
				return lsmod && procfs
			})
		}
		stapCheckArrays(t, stapWaitOK(t, base+"/arrays-autostart.stp", compile))
	})

	t.Run("stap_keepalive", func(t *testing.T) {
		// No request for 20 s: the module is unloaded, the autostart
		// one stays.
		testkit.EventuallyWithin(t, example+" to be unloaded after the keepalive", 3*time.Minute, func() bool {
			lsmod, procfs := stapModuleLoaded(t, example)
			return !lsmod && !procfs
		})
		if lsmod, procfs := stapModuleLoaded(t, arrays); !lsmod || !procfs {
			t.Errorf("autostart module %s stopped by the keepalive", arrays)
		}
	})

	t.Run("stap_autostart-restart", func(t *testing.T) {
		pid := stapioOf(arrays)
		if pid == 0 {
			t.Fatalf("no stapio process for %s", arrays)
		}
		// Killed from outside: stapio unloads the module and exits.
		syscall.Kill(pid, syscall.SIGTERM)
		testkit.EventuallyWithin(t, arrays+" to be started again", compile, func() bool {
			now := stapioOf(arrays)
			return now != 0 && now != pid && scriptRestarts(t, addr, "arrays-autostart.stp") >= 1
		})
		testkit.EventuallyWithin(t, arrays+" to be loaded again", compile, func() bool {
			lsmod, procfs := stapModuleLoaded(t, arrays)
			return lsmod && procfs
		})
		stapCheckArrays(t, stapWaitOK(t, base+"/arrays-autostart.stp", compile))
	})

	t.Run("stap_autostart-after-sigkill", func(t *testing.T) {
		pid := stapioOf(arrays)
		if pid == 0 {
			t.Fatalf("no stapio process for %s", arrays)
		}
		restarts := scriptRestarts(t, addr, "arrays-autostart.stp")
		// SIGKILLed, stapio cannot unload its module: it stays
		// loaded, and staprun would fail on it. The exporter
		// unloads it and starts the script again.
		syscall.Kill(pid, syscall.SIGKILL)
		testkit.EventuallyWithin(t, arrays+" to be started again after its stapio was killed", compile, func() bool {
			now := stapioOf(arrays)
			return now != 0 && now != pid && scriptRestarts(t, addr, "arrays-autostart.stp") > restarts
		})
		testkit.EventuallyWithin(t, arrays+" to be loaded again", compile, func() bool {
			lsmod, procfs := stapModuleLoaded(t, arrays)
			return lsmod && procfs
		})
		stapCheckArrays(t, stapWaitOK(t, base+"/arrays-autostart.stp", compile))
		if !strings.Contains(exporter.log.String(), `msg="unloaded the systemtap module its script left loaded" component=scripts script=arrays-autostart.stp module=`+arrays) {
			t.Errorf("the exporter did not say it unloaded %s after its stapio was SIGKILLed", arrays)
		}
	})
}

// scriptRestarts is probe_exporter_script_restarts_total of a script.
func scriptRestarts(t *testing.T, addr, script string) float64 {
	t.Helper()
	prefix := `probe_exporter_script_restarts_total{kind="stp",script="` + script + `"} `
	for _, l := range series(t, addr, prefix) {
		if v, err := strconv.ParseFloat(strings.TrimPrefix(l, prefix), 64); err == nil {
			return v
		}
	}
	return -1
}

// stapCheckArrays wants the exact lines of arrays-autostart.stp.
func stapCheckArrays(t *testing.T, body string) {
	t.Helper()
	for _, want := range []string{
		`arity1{k1="x"} 1`,
		`arity2{k1="x",k2="2"} 2`,
		`arity3{k1="x",k2="2",k3="y"} 3`,
		`arity5{k1="x",k2="2",k3="y",k4="4",k5="z"} 5`,
		`arity6{k1="x",k2="2",k3="y",k4="4",k5="z",k6="6"} 6`,
		`arity7{k1="x",k2="2",k3="y",k4="4",k5="z",k6="6",k7="w"} 7`,
		`arity8{k1="x",k2="2",k3="y",k4="4",k5="z",k6="6",k7="w",k8="8"} 8`,
	} {
		if !hasLine(strings.Split(body, "\n"), want) {
			t.Errorf("/arrays-autostart.stp lacks %q:\n%s", want, body)
		}
	}
}

// stapWaitOK polls url until it answers 200 and returns the body; while the
// script starts it must answer 503 with Retry-After.
func stapWaitOK(t *testing.T, url string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		code, hdr, body := testkit.Get(t, url)
		switch {
		case code == http.StatusOK:
			return body
		case code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "":
			t.Fatalf("%s: %d %q", url, code, body)
		case time.Now().After(deadline):
			t.Fatalf("%s: still %d after %v: %q", url, code, limit, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
