package scripts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostProc is where processes are looked up (Options.ProcRoot is only
// where systemtap's output is read).
const hostProc = "/proc"

// runEnv is the environment variable that marks every process of one
// script run (children inherit it), so that what a script started can be
// found again when no cgroup holds it.
const runEnv = "PROBE_EXPORTER_RUN"

// cgroupRoot is the cgroup v2 directory under which the supervisor puts
// one cgroup per script run: a child of the exporter's own cgroup, made
// with the first run, or "" when cgroup v2 is not mounted.
func cgroupRoot(procRoot string, pid int) string {
	mount := cgroup2Mount(procRoot)
	if mount == "" {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(procRoot, "self", "cgroup"))
	if err != nil {
		return ""
	}
	own := ""
	for _, l := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			own = p
		}
	}
	if own == "" {
		return ""
	}
	return filepath.Join(mount, own, cgroupPrefix+strconv.Itoa(pid))
}

// cgroupPrefix names the per-exporter cgroup of script runs; the
// exporter's pid follows.
const cgroupPrefix = "probe_exporter-scripts-"

// reapStale ends what scripts of an exporter that died without stopping
// them (SIGKILL, a crash) left running: the cgroups of exporters whose
// pid is gone are killed and removed. It returns how many processes it
// killed.
func reapStale(root, procRoot string, logger *slog.Logger) int {
	parent := filepath.Dir(root)
	entries, err := os.ReadDir(parent)
	if err != nil {
		return 0
	}
	killed := 0
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), cgroupPrefix)
		if !ok || !e.IsDir() || filepath.Join(parent, e.Name()) == root {
			continue
		}
		pid, err := strconv.Atoi(rest)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(procRoot, strconv.Itoa(pid))); err == nil {
			continue // that exporter still runs
		}
		dir := filepath.Join(parent, e.Name())
		runs, _ := os.ReadDir(dir)
		for _, r := range runs {
			if !r.IsDir() {
				continue
			}
			j := &jail{cgroup: filepath.Join(dir, r.Name()), fd: -1, procRoot: procRoot}
			n := len(j.pids())
			if n > 0 {
				j.signal(syscall.SIGKILL)
				j.waitEmpty(2 * time.Second)
				killed += n
			}
			_ = os.Remove(j.cgroup)
		}
		if err := os.Remove(dir); err == nil {
			logger.Warn("removed the script cgroups of an exporter that is gone", "cgroup", dir, "killed", killed)
		}
	}
	return killed
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted.
func cgroup2Mount(procRoot string) string {
	f, err := os.Open(filepath.Join(procRoot, "self", "mountinfo"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if len(fields) >= 5 && len(fs) >= 1 && fs[0] == "cgroup2" && fields[3] == "/" {
			return fields[4]
		}
	}
	return ""
}

// jail holds every process of one script run: a cgroup when one could be
// made, and in any case the run's environment marker, which a /proc walk
// finds in escaped descendants (setsid, double fork) as long as they keep
// their environment.
type jail struct {
	cgroup   string // "" without a cgroup
	fd       int    // open cgroup directory, -1 without
	marker   string // "PROBE_EXPORTER_RUN=..." in every process's environment
	procRoot string
}

func newJail(root, name, marker, procRoot string) *jail {
	j := &jail{fd: -1, marker: runEnv + "=" + marker, procRoot: procRoot}
	if root == "" {
		return j
	}
	if err := os.Mkdir(root, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return j // not ours to write (e.g. after --runas.user): the marker holds
	}
	dir := filepath.Join(root, sanitizeName(name)+"-"+marker[strings.LastIndexByte(marker, '.')+1:])
	if err := os.Mkdir(dir, 0o755); err != nil {
		return j
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		_ = os.Remove(dir)
		return j
	}
	j.cgroup, j.fd = dir, fd
	return j
}

// dropCgroup gives up the cgroup (the process could not be started in
// it); the marker still holds.
func (j *jail) dropCgroup() {
	if j.fd >= 0 {
		_ = syscall.Close(j.fd)
		j.fd = -1
	}
	if j.cgroup != "" {
		_ = os.Remove(j.cgroup)
		j.cgroup = ""
	}
}

// pids lists the live processes of the run: the cgroup's, or without one
// those carrying the marker.
func (j *jail) pids() []int {
	var out []int
	if j.cgroup != "" {
		if data, err := os.ReadFile(filepath.Join(j.cgroup, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					out = append(out, pid)
				}
			}
		}
	}
	if j.cgroup == "" {
		out = markedPids(j.procRoot, j.marker)
	}
	return out
}

// maxEnviron is the most of one process's environment scanned for a
// run's marker. exec copies at most 6 MiB of arguments and environment
// together, so a real environment is never longer; a process can claim
// more (prctl PR_SET_MM_MAP, which needs no privilege, points its
// environment at gigabytes of its memory), and is then scanned only this
// far.
const maxEnviron = 6 << 20

// markedPids walks /proc for live processes whose environment holds
// marker (an exact "NAME=VALUE" entry). Each environment is streamed
// through a small buffer, at most maxEnviron of it: the processes walked
// are anyone's, and their environments whatever they claim.
func markedPids(procRoot, marker string) []int {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	want := []byte(marker)
	br := bufio.NewReaderSize(nil, 64<<10)
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.OpenFile(filepath.Join(procRoot, e.Name(), "environ"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			continue // gone, or not ours to read
		}
		br.Reset(io.LimitReader(f, maxEnviron))
		found := hasEntry(br, want)
		f.Close()
		if found {
			out = append(out, pid)
		}
	}
	return out
}

// hasEntry reports whether the NUL-separated entries r reads include want
// (shorter than r's buffer); longer entries are skipped a buffer at a
// time, never held whole.
func hasEntry(r *bufio.Reader, want []byte) bool {
	whole := true // the slice read starts an entry
	for {
		entry, err := r.ReadSlice(0)
		switch {
		case err == bufio.ErrBufferFull:
			whole = false
			continue
		case err != nil && len(entry) == 0:
			return false
		}
		if whole && bytes.Equal(bytes.TrimSuffix(entry, []byte{0}), want) {
			return true
		}
		if err != nil {
			return false
		}
		whole = true
	}
}

// signal sends sig to every process of the run.
func (j *jail) signal(sig syscall.Signal) {
	if sig == syscall.SIGKILL && j.cgroup != "" {
		_ = os.WriteFile(filepath.Join(j.cgroup, "cgroup.kill"), []byte("1"), 0)
	}
	for _, pid := range j.pids() {
		_ = syscall.Kill(pid, sig)
	}
}

// empty reports whether no process of the run is left.
func (j *jail) empty() bool { return len(j.pids()) == 0 }

// waitEmpty polls until the run has no process left or d has passed.
func (j *jail) waitEmpty(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if j.empty() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminate ends every process of the run: SIGTERM, SIGKILL after grace,
// and waits (at most killWait more) for them to be gone.
func (j *jail) terminate(grace, killWait time.Duration) error {
	if j.empty() {
		return nil
	}
	j.signal(syscall.SIGTERM)
	if j.waitEmpty(grace) {
		return nil
	}
	j.signal(syscall.SIGKILL)
	if j.waitEmpty(killWait) {
		return nil
	}
	return fmt.Errorf("processes %v survived SIGKILL", j.pids())
}

// remove deletes the run's cgroup (it is empty by then).
func (j *jail) remove() {
	if j.fd >= 0 {
		_ = syscall.Close(j.fd)
		j.fd = -1
	}
	if j.cgroup != "" {
		_ = os.Remove(j.cgroup)
	}
}
