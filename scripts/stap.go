package scripts

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"
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
	for _, p := range s.stapOutputPaths() {
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		if len(data) > s.opts.MaxOutput {
			return nil, fmt.Errorf("%s: output of %d bytes is over the %d-byte limit", p, len(data), s.opts.MaxOutput)
		}
		return fixEscapes(data), nil
	}
	return nil, errStarting
}
