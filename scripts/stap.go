package scripts

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/privdir"
	"golang.org/x/sys/unix"
)

// maxModuleName is the longest kernel module name (MODULE_NAME_LEN - 1).
const maxModuleName = 55

// stapModuleName is the predictable systemtap module name of a script:
// unique per exporter instance and script, made of the characters kernel
// module names allow.
func stapModuleName(exporterID, script string) string {
	base := strings.TrimSuffix(script, ".stp")
	name := "probe_exporter_" + exporterID + "_" + base
	b := []byte(name)
	for i, c := range b {
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			b[i] = '_'
		}
	}
	if len(b) > maxModuleName {
		b = b[:maxModuleName]
	}
	return string(b)
}

// stapCommand runs an executable .stp (a #! stap script or a wrapper shell
// script) directly with -m MODULE, a plain one as stap -m MODULE FILE, as
// systemtap's own stap-exporter does.
func (s *script) stapCommand() (*exec.Cmd, error) {
	st, err := os.Stat(s.path)
	if err != nil {
		return nil, err
	}
	if st.Mode()&0o111 != 0 {
		return exec.Command(s.path, "-m", s.module), nil
	}
	if ko := s.builtModule(st.ModTime()); ko != "" {
		if staprun, err := exec.LookPath("staprun"); err == nil {
			return exec.Command(staprun, ko), nil
		}
	}
	stap, err := exec.LookPath(s.opts.stap())
	if err != nil {
		return nil, fmt.Errorf("%s needs systemtap (stap): %w", s.name, err)
	}
	return exec.Command(stap, "-m", s.module, s.path), nil
}

// builtModule is MODULE.ko in the scripts directory, which stap -m leaves
// there, when it is newer than the script and built for the running
// kernel: the script then starts again in seconds with staprun instead
// of compiling for minutes (with -m, stap caches no module). "" otherwise.
func (s *script) builtModule(scriptTime time.Time) string {
	ko := filepath.Join(s.opts.Dir, s.module+".ko")
	st, err := os.Stat(ko)
	if err != nil || !st.Mode().IsRegular() || st.ModTime().Before(scriptTime) {
		return ""
	}
	rel, err := os.ReadFile(filepath.Join(s.opts.procRoot(), "sys/kernel/osrelease"))
	if err != nil {
		return ""
	}
	if vermagic(ko) != strings.TrimSpace(string(rel)) {
		return ""
	}
	return ko
}

// vermagic is the kernel release a module was built for: the first word
// of its .modinfo vermagic= string.
func vermagic(ko string) string {
	f, err := elf.Open(ko)
	if err != nil {
		return ""
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return ""
	}
	data, err := sec.Data()
	if err != nil {
		return ""
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("vermagic=")); ok {
			if f := strings.Fields(string(v)); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// stapOutputPaths are where a running module's prometheus probe output
// appears: procfs for the kernel-module runtime, /var/tmp for the BPF
// runtime.
func (s *script) stapOutputPaths() []string {
	usr := "root"
	if u, err := user.Current(); err == nil {
		usr = u.Username
	}
	return []string{
		filepath.Join(s.opts.procRoot(), "systemtap", s.module, "__prometheus"),
		filepath.Join(s.opts.varTmp(), "systemtap-"+usr, s.module, "__prometheus"),
	}
}

// scrapeStap transcribes the module's __prometheus file (reading it runs
// the script's probe prometheus), fixing escapes the text format lacks.
func (s *script) scrapeStap() ([]byte, error) {
	paths := s.stapOutputPaths()
	for i, p := range paths {
		var data []byte
		var err error
		if i == 0 {
			// procfs: the kernel's, as the module made it.
			data, err = readCapped(p, s.opts.MaxOutput)
		} else {
			data, err = readPrivate(p, s.opts.MaxOutput)
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		return fixEscapes(data), nil
	}
	return nil, errStarting
}

// readCapped reads at most max bytes of path, without blocking on a FIFO.
func readCapped(path string, max int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, fmt.Errorf("output over the %d-byte limit", max)
	}
	return data, nil
}

// readPrivate reads the BPF runtime's output under /var/tmp, a directory
// every user can write: the directories holding it must be root's and
// writable by no one else (another user may have made
// /var/tmp/systemtap-root first), and the file a regular one of root's,
// not a link, read within max bytes.
func readPrivate(path string, max int) ([]byte, error) {
	dir := filepath.Dir(path)
	if _, err := os.Lstat(dir); err != nil {
		return nil, err
	}
	real, err := privdir.Check(dir)
	if err != nil {
		return nil, err
	}
	return privdir.ReadFile(filepath.Join(real, filepath.Base(path)), int64(max))
}

// stapModuleLoaded reports whether the script's module is in
// /proc/modules.
func (s *script) stapModuleLoaded() bool {
	data, err := os.ReadFile(filepath.Join(s.opts.procRoot(), "modules"))
	if err != nil {
		return false
	}
	for _, l := range bytes.Split(data, []byte{'\n'}) {
		if name, _, ok := bytes.Cut(l, []byte{' '}); ok && string(name) == s.module {
			return true
		}
	}
	return false
}

// unloadStapModule removes the script's module when no process of the run
// is left to do it. stapio unloads the module as it stops, but a stapio
// killed first (SIGKILL after the stop grace on a loaded machine, or from
// outside) leaves it loaded: its probes would go on firing with nobody to
// read them, and the next start would fail with "module already loaded".
// A module still in use (a live stapio of it) is not removed: the kernel
// refuses with EWOULDBLOCK. Retries for at most wait.
func (s *script) unloadStapModule(wait time.Duration) error {
	if s.kind != KindStap || !s.stapModuleLoaded() {
		return nil
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.DeleteModule(s.module, unix.O_NONBLOCK)
		switch {
		case err == nil:
			s.logger.Info("unloaded the systemtap module its script left loaded", "script", s.name, "module", s.module)
			return nil
		case errors.Is(err, unix.ENOENT):
			return nil
		case !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EBUSY):
			return fmt.Errorf("unloading systemtap module %s: %w", s.module, err)
		}
		// In use for a moment (a scrape reading its procfs file) or
		// already going (stapio's own staprun -d).
		if !s.stapModuleLoaded() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("unloading systemtap module %s: still in use after %v: %w", s.module, wait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
