// Package targets selects processes (by command name, executable, command
// line, cgroup or pid) and follows them as they start and exit, driven by
// exec and exit tracepoints, with /proc scans to begin with and as a
// fallback.
package targets

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/probe-exporter/probe_exporter/internal/procfs"
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
type Process = procfs.Process
