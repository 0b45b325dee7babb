package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/probe-exporter/probe_exporter/internal/procfs"
)

// Selector chooses processes; every field given must match. It is the
// attachments: of v1-layout configs (ebpf-userspace-exporter's) and a
// target of --profile.config, and what the process watcher follows.
type Selector struct {
	// Comm is the exact command name (/proc/PID/comm): comm: in profile
	// targets; binary_name: (ebpf-userspace-exporter's name) or comm: in
	// attachments.
	Comm string `yaml:"comm"`
	// Exe is a path or glob matched against the executable as the
	// process sees it (inside its mount namespace and chroot).
	Exe string `yaml:"exe"`
	// Cmdline is an RE2 regexp on the command line, arguments joined by
	// spaces.
	Cmdline string `yaml:"cmdline"`
	// Cgroup is an RE2 regexp on the cgroup v2 path.
	Cgroup string `yaml:"cgroup"`
	// PIDs are process ids.
	PIDs []int `yaml:"pid"`

	cmdline, cgroup *regexp.Regexp
}

// attachments is the attachments: (or attachment:) of a v1-layout
// program, ebpf-userspace-exporter's: a Selector whose command name is
// binary_name (or comm). Where a Selector is inlined (profile targets)
// its field tags apply.
type attachments struct{ Selector }

func (a *attachments) selector() *Selector {
	if a == nil {
		return nil
	}
	return &a.Selector
}

// UnmarshalYAML decodes the mapping strictly, each error naming its line.
func (a *attachments) UnmarshalYAML(n *yaml.Node) error {
	s := &a.Selector
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: attachments must be a mapping of binary_name, exe, cmdline, cgroup or pid", n.Line)
	}
	var comm *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "binary_name", "comm":
			if comm != nil {
				return fmt.Errorf("line %d: %s: and %s: both give the command name", k.Line, comm.Value, k.Value)
			}
			comm = k
			err = v.Decode(&s.Comm)
		case "exe":
			err = v.Decode(&s.Exe)
		case "cmdline":
			err = v.Decode(&s.Cmdline)
		case "cgroup":
			err = v.Decode(&s.Cgroup)
		case "pid":
			err = v.Decode(&s.PIDs)
		default:
			return fmt.Errorf("line %d: field %s not found in type config.Selector", k.Line, k.Value)
		}
		if err != nil {
			return err
		}
	}
	if !s.Empty() {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("line %d: attachments: %w", n.Line, err)
		}
	}
	return nil
}

// Empty reports whether the selector selects nothing by itself.
func (s *Selector) Empty() bool {
	return s == nil || s.Comm == "" && s.Exe == "" && s.Cmdline == "" && s.Cgroup == "" && len(s.PIDs) == 0
}

// Validate compiles the selector; an empty selector is an error.
func (s *Selector) Validate() error {
	if s.Empty() {
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
func (s *Selector) Matches(p procfs.Process) bool {
	if s.Comm != "" && p.Comm != s.Comm {
		return false
	}
	if s.Exe != "" && !s.MatchExe(p.ExeInRoot) {
		return false
	}
	if s.cmdline != nil && !s.cmdline.MatchString(p.Cmdline) {
		return false
	}
	if s.Cgroup != "" && !s.MatchCgroup(p.Cgroup) {
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

// MatchExe reports whether an executable (as its process sees it) matches
// Exe.
func (s *Selector) MatchExe(exe string) bool {
	if exe == "" {
		return false
	}
	ok, _ := filepath.Match(s.Exe, exe)
	return ok || exe == s.Exe
}

// MatchCgroup reports whether a cgroup v2 path matches Cgroup. Validate
// must have succeeded.
func (s *Selector) MatchCgroup(path string) bool {
	return s.cgroup != nil && s.cgroup.MatchString(path)
}
