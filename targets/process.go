// Package targets selects processes (by command name, executable, command
// line, cgroup or pid) and follows them as they start and exit, driven by
// exec and exit tracepoints, with /proc scans to begin with and as a
// fallback.
package targets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Selector chooses processes; every field given must match.
type Selector struct {
	// Comm is the exact command name (/proc/PID/comm), as ebpf-userspace-exporter's
	// binary_name.
	Comm string
	// Exe is a path or glob matched against the executable as the
	// process sees it (inside its mount namespace).
	Exe string
	// Cmdline is an RE2 regexp on the command line, arguments joined by
	// spaces.
	Cmdline string
	// Cgroup is an RE2 regexp on the cgroup v2 path.
	Cgroup string
	// PIDs are process ids.
	PIDs []int

	cmdline, cgroup *regexp.Regexp
}

// Validate compiles the selector; an empty selector is an error.
func (s *Selector) Validate() error {
	if s.Comm == "" && s.Exe == "" && s.Cmdline == "" && s.Cgroup == "" && len(s.PIDs) == 0 {
		return errors.New("selector is empty: give binary_name, exe, cmdline, cgroup or pid")
	}
	if s.Exe != "" {
		if _, err := filepath.Match(s.Exe, "/"); err != nil {
			return fmt.Errorf("exe %q: %w", s.Exe, err)
		}
	}
	var err error
	if s.Cmdline != "" {
		if s.cmdline, err = regexp.Compile(s.Cmdline); err != nil {
			return fmt.Errorf("cmdline: %w", err)
		}
	}
	if s.Cgroup != "" {
		if s.cgroup, err = regexp.Compile(s.Cgroup); err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
	}
	return nil
}

// String describes the selector for logs and labels.
func (s Selector) String() string {
	var parts []string
	if s.Comm != "" {
		parts = append(parts, "comm="+s.Comm)
	}
	if s.Exe != "" {
		parts = append(parts, "exe="+s.Exe)
	}
	if s.Cmdline != "" {
		parts = append(parts, "cmdline=~"+s.Cmdline)
	}
	if s.Cgroup != "" {
		parts = append(parts, "cgroup=~"+s.Cgroup)
	}
	for _, p := range s.PIDs {
		parts = append(parts, "pid="+strconv.Itoa(p))
	}
	return strings.Join(parts, ",")
}

// Matches reports whether p is selected. Validate must have succeeded.
func (s *Selector) Matches(p Process) bool {
	if s.Comm != "" && p.Comm != s.Comm {
		return false
	}
	if s.Exe != "" && !s.matchExe(p) {
		return false
	}
	if s.cmdline != nil && !s.cmdline.MatchString(p.Cmdline) {
		return false
	}
	if s.cgroup != nil && !s.cgroup.MatchString(p.Cgroup) {
		return false
	}
	if len(s.PIDs) > 0 {
		found := false
		for _, pid := range s.PIDs {
			found = found || pid == p.PID
		}
		if !found {
			return false
		}
	}
	return true
}

func (s *Selector) matchExe(p Process) bool {
	if p.Exe == "" {
		return false
	}
	ok, _ := filepath.Match(s.Exe, p.Exe)
	return ok || p.Exe == s.Exe
}

// Process is what /proc tells about one process.
type Process struct {
	PID     int
	Comm    string
	Exe     string // as the process sees it
	Cmdline string
	Cgroup  string
	// Root is /proc/PID/root: the process's view of the filesystem.
	Root string
	// StartTime (clock ticks after boot) tells a reused pid apart.
	StartTime uint64
}

// ReadProcess reads /proc/PID under procRoot.
func ReadProcess(procRoot string, pid int) (Process, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	p := Process{PID: pid, Root: filepath.Join(dir, "root")}
	comm, err := os.ReadFile(filepath.Join(dir, "comm"))
	if err != nil {
		return p, err
	}
	p.Comm = strings.TrimSuffix(string(comm), "\n")
	p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	p.Exe = strings.TrimSuffix(p.Exe, " (deleted)")
	if cl, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.Cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
	}
	if cg, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		for _, line := range strings.Split(string(cg), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok {
				p.Cgroup = rest
			}
		}
	}
	if st, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil {
		// Field 22, counted after the parenthesised command name.
		if i := bytes.LastIndexByte(st, ')'); i > 0 {
			f := strings.Fields(string(st[i+1:]))
			if len(f) > 19 {
				p.StartTime, _ = strconv.ParseUint(f[19], 10, 64)
			}
		}
	}
	return p, nil
}

// HostPath is where a file the process sees at path is, from the host.
func (p Process) HostPath(path string) string {
	return filepath.Join(p.Root, path)
}

// Mapping is an executable file mapped by a process.
type Mapping struct {
	Path       string // as the process sees it
	Dev, Inode string
}

// Mappings lists the files mapped executable in /proc/PID/maps, once each.
func (p Process) Mappings() ([]Mapping, error) {
	f, err := os.Open(filepath.Join(filepath.Dir(p.Root), "maps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []Mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.Contains(fields[1], "x") || !strings.HasPrefix(fields[5], "/") {
			continue
		}
		path := strings.Join(fields[5:], " ")
		if seen[path] {
			continue
		}
		seen[path] = true
		out = append(out, Mapping{Path: path, Dev: fields[3], Inode: fields[4]})
	}
	return out, sc.Err()
}

// listPIDs lists the processes in procRoot.
func listPIDs(procRoot string) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
