package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// kernelBTFEnv lists, in the kernel matrix's prepare mode on the host
// (testkit.PrepareEnv), the BTF of each guest kernel: inline code is
// translated and compiled for each into the compiler cache the guests
// read, as under qemu's TCG clang would take minutes.
const kernelBTFEnv = "PROBE_EXPORTER_TEST_KERNEL_BTF"

// compilerCacheArgs points the exporter at the kernel matrix's compiler
// cache (a directory of the object cache, testkit.CacheEnv) when there is
// one; elsewhere the exporter's default cache serves.
func compilerCacheArgs() []string {
	if dir := os.Getenv(testkit.CacheEnv); dir != "" {
		return []string{"--compiler.cache-dir=" + filepath.Join(dir, "cc")}
	}
	return nil
}

// prepareInline, in the kernel matrix's prepare mode, fills the compiler
// cache with the configs of dir for every guest kernel's BTF and skips.
func prepareInline(t *testing.T, dir, names string) {
	t.Helper()
	if os.Getenv(testkit.PrepareEnv) == "" {
		return
	}
	for _, btf := range strings.Fields(os.Getenv(kernelBTFEnv)) {
		args := append([]string{"--config.dir=" + dir, "--config.names=" + names, "--config.check", "--btf.path=" + btf}, compilerCacheArgs()...)
		out, _ := exec.Command(binaryPath, args...).CombinedOutput()
		if strings.Contains(string(out), "translating bcc code") || strings.Contains(string(out), "compiling inline code") || strings.Contains(string(out), "compiler cache") {
			t.Fatalf("compiling %s for %s:\n%s", names, btf, tail(string(out), 30))
		}
	}
	t.Skip("compiler cache filled; preparing only")
}

// kallsyms is the set of function names in /proc/kallsyms.
func kallsyms(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && (fields[1] == "T" || fields[1] == "t") {
			syms[fields[2]] = true
		}
	}
	return syms
}

// nullBlock returns the first null_blk device (the kernel matrix loads
// null_blk): IO on it is the test's only.
func nullBlock(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob("/sys/block/nullb*")
	if len(m) == 0 {
		if attachRequired("kprobe") {
			t.Fatal("no null_blk device (/sys/block/nullb*): the kernel matrix loads null_blk from the kernel's package")
		}
		t.Skip("no null_blk device (modprobe null_blk)")
	}
	dev := "/dev/" + filepath.Base(m[0])
	if _, err := os.Stat(dev); err != nil {
		t.Fatalf("%s has no device node: %v", m[0], err)
	}
	return dev
}

// needKprobes skips (fails where kprobes are known to be there) on a kernel
// without kprobes.
func needKprobes(t *testing.T) {
	t.Helper()
	if reason := kprobeReason(); reason != "" {
		if attachRequired("kprobe") {
			t.Fatal(reason)
		}
		t.Skip(reason)
	}
}

// asThread runs f on a thread of its own named comm, as the kernel sees
// it (bpf_get_current_comm); the thread ends with f.
func asThread(comm string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the renamed thread exits with the goroutine.
		runtime.LockOSThread()
		name := append([]byte(comm), 0)
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
			done <- fmt.Errorf("PR_SET_NAME: %w", err)
			return
		}
		done <- f()
	}()
	return <-done
}

// pageCacheWork writes pages new pages of dev through the page cache and
// syncs them, drops them and reads them twice: pages misses, then pages
// hits.
func pageCacheWork(dev string, pages int) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	size := int64(pages) * 4096
	if err := unix.Fadvise(fd, 0, size, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise: %w", err)
	}
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	for i := 0; i < pages; i++ {
		if n, err := unix.Pwrite(fd, buf, int64(i)*4096); err != nil || n != len(buf) {
			return fmt.Errorf("pwrite page %d: %d, %v", i, n, err)
		}
	}
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if err := unix.Fadvise(fd, 0, size, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise: %w", err)
	}
	for round := 0; round < 2; round++ {
		for i := 0; i < pages; i++ {
			if n, err := unix.Pread(fd, buf, int64(i)*4096); err != nil || n != len(buf) {
				return fmt.Errorf("pread page %d: %d, %v", i, n, err)
			}
		}
	}
	return nil
}

// directReads makes n O_DIRECT reads of 4096 bytes from dev, each one
// block IO request.
func directReads(dev string, n int) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(buf)
	for i := 0; i < n; i++ {
		if got, err := unix.Pread(fd, buf, int64(i)*4096); err != nil || got != len(buf) {
			return fmt.Errorf("O_DIRECT pread %d: %d, %v", i, got, err)
		}
	}
	return nil
}

// seriesValue is the value of the series whose line starts with prefix and
// contains each of the want strings (0 when there is none).
func seriesValue(t *testing.T, addr, prefix string, want ...string) float64 {
	t.Helper()
next:
	for _, l := range series(t, addr, prefix) {
		for _, w := range want {
			if !strings.Contains(l, w) {
				continue next
			}
		}
		v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		return v
	}
	return 0
}

// startBCCExample serves the config (named name) and waits for it to be
// up.
func startBCCExample(t *testing.T, name, cfg string) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prepareInline(t, dir, name)
	needKprobes(t)
	if os.Getenv(testkit.CacheEnv) == "" {
		needClang(t)
	}
	addr := freePort(t)
	args := append([]string{"--web.listen-address=" + addr, "--config.dir=" + dir, "--config.names=" + name}, compilerCacheArgs()...)
	p := startExporter(t, func() bool { return serves(addr) }, args...)
	deadline := time.Now().Add(60 * time.Second)
	up := `probe_exporter_config_up{config="` + name + `"} 1`
	for !hasLine(series(t, addr, "probe_exporter_config_up{"), up) {
		if time.Now().After(deadline) {
			t.Fatalf("%s is not up:\n%s", name, tail(p.Log(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p, addr
}

// TestBCCKprobeCounts runs ebpf_exporter v1's page cache and block IO
// examples, their bcc code unchanged, on a kernel with kprobes, and makes
// the kernel do known work on a null_blk device: each function the kernel
// still calls for it counts at least that work, and what the kernel lacks
// (functions, struct request's rq_disk) is named.
func TestBCCKprobeCounts(t *testing.T) {
	t.Run("cachestat", func(t *testing.T) {
		dev := ""
		if os.Getenv(testkit.PrepareEnv) == "" {
			needKprobes(t)
			dev = nullBlock(t)
		}
		p, addr := startBCCExample(t, "cachestat", bccCachestatConfig)
		syms := kallsyms(t)
		const pages = 256
		const metric = "probe_exporter_page_cache_ops_total{"
		// Each function, the work of the test that passes through it
		// where the kernel's page cache still calls it, and its folio
		// successor: where that exists the function is a wrapper for
		// other callers.
		funcs := []struct{ fn, work, successor string }{
			{"add_to_page_cache_lru", "read misses", "filemap_add_folio"},
			{"mark_page_accessed", "read hits", "folio_mark_accessed"},
			{"account_page_dirtied", "written pages", "folio_account_dirtied"},
			{"mark_buffer_dirty", "written pages", ""},
		}
		before := map[string]float64{}
		for _, f := range funcs {
			before[f.fn] = seriesValue(t, addr, metric, `command="syslog-ng"`, `op="`+f.fn+`"`)
		}
		// The example counts only syslog-ng and systemd-journald.
		if err := asThread("syslog-ng", func() error { return pageCacheWork(dev, pages) }); err != nil {
			t.Fatal(err)
		}
		log := p.Log()
		for _, f := range funcs {
			got := seriesValue(t, addr, metric, `command="syslog-ng"`, `op="`+f.fn+`"`) - before[f.fn]
			switch {
			case !syms[f.fn]:
				if want := "kernel has no function " + f.fn; !strings.Contains(log, want) {
					t.Errorf("the log does not say %q:\n%s", want, tail(log, 30))
				}
				t.Logf("%s: not in this kernel, named in the log", f.fn)
			case f.successor != "" && syms[f.successor]:
				t.Logf("%s: %v for %d %s (the page cache calls %s)", f.fn, got, pages, f.work, f.successor)
			case got < pages:
				t.Errorf("%s counted %v, want at least %d (%s)", f.fn, got, pages, f.work)
			default:
				t.Logf("%s: %v for %d %s", f.fn, got, pages, f.work)
			}
		}
	})

	t.Run("bio", func(t *testing.T) {
		dev := ""
		if os.Getenv(testkit.PrepareEnv) == "" {
			needKprobes(t)
			dev = nullBlock(t)
			// The start probe's work shows in its run count.
			const stats = "/proc/sys/kernel/bpf_stats_enabled"
			old, err := os.ReadFile(stats)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(stats, []byte("1"), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(stats, old, 0o644) })
		}
		p, addr := startBCCExample(t, "bio", bccBioConfig)
		syms := kallsyms(t)
		const reads = 300
		const runs = "probe_exporter_ebpf_program_run_count_total{"
		disk := `device="` + filepath.Base(dev) + `",operation="read"`
		before := seriesValue(t, addr, runs, `config="bio"`, `program="trace_req_start"`)
		sizes := seriesValue(t, addr, "probe_exporter_bio_size_bytes_count{", disk)
		if err := directReads(dev, reads); err != nil {
			t.Fatal(err)
		}
		if got := seriesValue(t, addr, runs, `config="bio"`, `program="trace_req_start"`) - before; got != reads {
			t.Errorf("trace_req_start ran %v times for %d O_DIRECT reads, want %d", got, reads, reads)
		}
		log := p.Log()
		for _, fn := range []string{"blk_start_request", "blk_mq_start_request"} {
			if !syms[fn] && !strings.Contains(log, "kernel has no function "+fn) {
				t.Errorf("the log does not name the missing %s:\n%s", fn, tail(log, 30))
			}
		}
		const noRqDisk = "struct request has no field rq_disk"
		if strings.Contains(log, noRqDisk) {
			// Kernels >= 5.17: the completion probe is left out, named.
			if !strings.Contains(log, "trace_req_completion") {
				t.Errorf("the log does not name the program left out:\n%s", tail(log, 30))
			}
			if l := series(t, addr, "probe_exporter_bio_"); len(l) > 0 {
				t.Errorf("histograms without their program have series:\n%s", strings.Join(l, "\n"))
			}
			t.Logf("trace_req_start counted %d requests; trace_req_completion left out: %s", reads, noRqDisk)
			return
		}
		if !syms["blk_account_io_completion"] {
			if !strings.Contains(log, "kernel has no function blk_account_io_completion") {
				t.Errorf("the log does not name the missing blk_account_io_completion:\n%s", tail(log, 30))
			}
			return
		}
		if got := seriesValue(t, addr, "probe_exporter_bio_size_bytes_count{", disk) - sizes; got != reads {
			t.Errorf("bio_size_bytes counted %v reads of %s, want %d", got, dev, reads)
		}
	})
}
