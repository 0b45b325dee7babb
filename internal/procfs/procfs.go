// Package procfs reads what /proc tells about a process: its identity
// (command name, executable, command line, cgroup, start time), its memory
// mappings (/proc/PID/maps) and where the files it sees are from the host
// (through /proc/PID/root, so files of processes in containers are found).
package procfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Caps on what one process's files may make the reader hold. The kernel
// bounds stat, status, comm and cgroup to a few kilobytes; a process
// chooses its command line (up to its stack limit) and its mappings
// (65530 by default, each with a path of up to 4 KiB).
const (
	// MaxSmallFile caps stat, status, comm and cgroup: larger is
	// malformed.
	MaxSmallFile = 64 << 10
	// MaxCmdline is the most of a command line read; the rest is cut.
	MaxCmdline = 1 << 20
	// MaxMaps caps a maps file (the largest real processes map a few
	// thousand files, about 1 MiB of lines): larger is an error.
	MaxMaps = 32 << 20
)

// readFile reads at most limit bytes of a file, opened without blocking.
// With cut, a longer file is cut to limit bytes; without, it is an error.
func readFile(path string, limit int64, cut bool) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		if !cut {
			return nil, fmt.Errorf("%s: more than the %d bytes read", path, limit)
		}
		data = data[:limit]
	}
	return data, nil
}

// Process is what /proc tells about one process.
type Process struct {
	PID  int
	Comm string
	// Exe is the executable's path from the exporter's root (for a
	// chrooted process, with its root's path in front), without
	// " (deleted)": the path /proc/PID/maps names it by.
	Exe string
	// ExeInRoot is the executable's path as the process sees it: Exe
	// without the process's root directory (chroot) in front. Under
	// pivot_root (containers) the kernel already names it so.
	ExeInRoot string
	Cmdline   string // arguments joined by spaces
	Cgroup    string // cgroup v2 path
	// Root is /proc/PID/root: the process's view of the filesystem.
	Root string
	// StartTime (clock ticks after boot) tells a reused pid apart.
	StartTime uint64
}

// Dir is /proc/PID under procRoot.
func Dir(procRoot string, pid int) string {
	return filepath.Join(procRoot, strconv.Itoa(pid))
}

// HostPath is where the file a process sees at path is, from the host:
// through /proc/PID/root, which is the process's mount namespace and root.
func HostPath(procRoot string, pid int, path string) string {
	return filepath.Join(Dir(procRoot, pid), "root", path)
}

// Read reads /proc/PID under procRoot. Only a missing comm (the process
// is gone) is an error; other files a process may hide leave their fields
// empty.
func Read(procRoot string, pid int) (Process, error) {
	dir := Dir(procRoot, pid)
	p := Process{PID: pid, Root: filepath.Join(dir, "root")}
	comm, err := readFile(filepath.Join(dir, "comm"), MaxSmallFile, false)
	if err != nil {
		return p, err
	}
	p.Comm = strings.TrimSuffix(string(comm), "\n")
	p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	p.Exe = strings.TrimSuffix(p.Exe, " (deleted)")
	p.ExeInRoot = p.Exe
	if root, err := os.Readlink(p.Root); err == nil {
		p.ExeInRoot = inRoot(p.Exe, root)
	}
	if cl, err := readFile(filepath.Join(dir, "cmdline"), MaxCmdline, true); err == nil {
		p.Cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
	}
	if cg, err := readFile(filepath.Join(dir, "cgroup"), MaxSmallFile, false); err == nil {
		for _, line := range strings.Split(string(cg), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok {
				p.Cgroup = rest
			}
		}
	}
	if st, err := readStat(dir); err == nil {
		p.StartTime = st.startTime
	}
	return p, nil
}

// inRoot is path as a process whose root directory is root sees it: a
// path under root without root in front; any other path as it is (an
// executable outside the root of a process that called chroot itself).
func inRoot(path, root string) string {
	if root == "/" || root == "" || !strings.HasPrefix(path, root+"/") {
		return path
	}
	return path[len(root):]
}

// Dir is the process's /proc/PID.
func (p Process) Dir() string { return filepath.Dir(p.Root) }

// HostPath is where a file the process sees at path is, from the host.
func (p Process) HostPath(path string) string { return filepath.Join(p.Root, path) }

// ExePath is /proc/PID/exe, which opens the very file the process runs
// (in a container, or deleted, too).
func (p Process) ExePath() string { return filepath.Join(p.Dir(), "exe") }

// Mappings reads the process's /proc/PID/maps.
func (p Process) Mappings() ([]Mapping, error) { return readMaps(p.Dir()) }

// Alive reports whether the process still runs: not a zombie, and its pid
// not reused by another process since it was read.
func (p Process) Alive() bool { return alive(p.Dir(), p.StartTime) }

// Alive reports whether process pid, started at startTime, still runs.
func Alive(procRoot string, pid int, startTime uint64) bool {
	return alive(Dir(procRoot, pid), startTime)
}

func alive(dir string, startTime uint64) bool {
	st, err := readStat(dir)
	return err == nil && st.state != 'Z' && st.state != 'X' && st.startTime == startTime
}

// NSPID is the process's pid in its own pid namespace (the last NSpid
// field of /proc/PID/status), 0 if unknown.
func NSPID(procRoot string, pid int) int {
	data, err := readFile(filepath.Join(Dir(procRoot, pid), "status"), MaxSmallFile, false)
	if err != nil {
		return 0
	}
	return parseNSPID(data)
}

// parseNSPID reads the last NSpid field of a status file, 0 if none.
func parseNSPID(data []byte) int {
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}

// PIDs lists the processes under procRoot.
func PIDs(procRoot string) ([]int, error) {
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

type stat struct {
	state     byte
	startTime uint64
}

// readStat reads the state (field 3) and start time (field 22) of
// dir/stat, counted after the parenthesised command name, which may hold
// spaces and parentheses itself.
func readStat(dir string) (stat, error) {
	data, err := readFile(filepath.Join(dir, "stat"), MaxSmallFile, false)
	if err != nil {
		return stat{}, err
	}
	return parseStat(data)
}

func parseStat(data []byte) (stat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return stat{}, errMalformed("stat", string(data))
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, errMalformed("stat", string(data))
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return stat{}, errMalformed("stat", string(data))
	}
	return stat{state: f[0][0], startTime: start}, nil
}
