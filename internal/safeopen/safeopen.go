// Package safeopen is the one way the exporter, running as root, opens a
// file that another process or an unprivileged user controls: a perf map
// in a process's /tmp, the ELF files a process maps, the binaries and
// libraries probes are placed in.
//
// A path is resolved inside the process's root (openat2 with
// RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS on a directory fd of
// /proc/PID/root, or the same rules walked component by component where
// the kernel lacks openat2), never following a symlink out of that root,
// and its last component is not followed unless asked. It is first opened
// with O_PATH, which opens nothing (a FIFO, a device or a socket planted
// there is never opened, so opening cannot block or act on a device), and
// fstat'ed: only a regular file is then opened for reading, through
// /proc/self/fd of that very O_PATH descriptor, with O_NONBLOCK, and
// checked to be the same inode. Size caps and owner rules follow (see
// Rules). A mapped file is preferably reached through
// /proc/PID/map_files/START-END: the file the process really maps, which
// no later rename, symlink or bind mount in its mount namespace can swap.
//
// Reading a regular file can still block (a FUSE or NFS server that does
// not answer): Runner runs such reads off the callers' paths, with a
// deadline.
package safeopen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/procfs"
)

// Reason says why a file was refused or not read; it is the reason label
// of the exporter's untrusted-file error counter.
type Reason string

// Reasons a file is refused or not read.
const (
	// Symlink: a symlink where none may be followed, or a magic link.
	Symlink Reason = "symlink"
	// NotRegular: a FIFO, device, socket or directory.
	NotRegular Reason = "not_regular"
	// TooLarge: larger than the caller's cap.
	TooLarge Reason = "too_large"
	// Owner: not owned by whom the convention requires.
	Owner Reason = "owner"
	// Writable: writable by group or others where the convention forbids
	// it.
	Writable Reason = "writable"
	// Changed: not the file the process maps (a different inode).
	Changed Reason = "changed"
	// Timeout: not read within the deadline.
	Timeout Reason = "timeout"
	// Busy: too many reads already stuck; refused at once.
	Busy Reason = "busy"
)

// Error is a file refused, with the reason.
type Error struct {
	Path   string
	Reason Reason
	Err    error // the cause, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: refused (%s)", e.Path, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf is the reason of a refusal in err's chain, "" when err is no
// refusal (a file that does not exist is not one).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func refuse(path string, r Reason, format string, args ...any) error {
	var err error
	if format != "" {
		err = fmt.Errorf(format, args...)
	}
	return &Error{Path: path, Reason: r, Err: err}
}

// Rules are what a file must satisfy besides being a regular file.
type Rules struct {
	// MaxSize refuses larger files; 0 is no cap.
	MaxSize int64
	// Owners, when not nil, are the uids that may own the file.
	Owners []uint32
	// NotWritable refuses a file writable by group or others.
	NotWritable bool
	// FollowLast follows a symlink in the last component (inside the
	// root, as every other component): for paths an administrator
	// names, such as a config's /usr/lib/libfoo.so, which distributions
	// make symlinks.
	FollowLast bool
}

// File is a regular file opened under Rules.
type File struct {
	*os.File
	// Stat is the file's fstat.
	Stat unix.Stat_t
}

// ProcPath is /proc/self/fd/N of the open file: a path that re-opens this
// very file (for APIs that take a path, such as cilium/ebpf's
// link.OpenExecutable), whatever now is at the name it was found under.
// It is valid while f is open.
func (f *File) ProcPath() string {
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
}

// Dev is the file's device in the kernel's encoding (major<<20|minor), as
// /proc/PID/maps and BPF programs see it.
func (f *File) Dev() uint64 {
	return uint64(unix.Major(f.Stat.Dev))<<20 | uint64(unix.Minor(f.Stat.Dev))
}

// Named rewrites err so that f's ProcPath in its message reads as the
// name f was opened under; errors.Is and As still see the cause.
func (f *File) Named(err error) error {
	if err == nil || !strings.Contains(err.Error(), f.ProcPath()) {
		return err
	}
	return &renamed{msg: strings.ReplaceAll(err.Error(), f.ProcPath(), f.Name()), err: err}
}

type renamed struct {
	msg string
	err error
}

func (r *renamed) Error() string { return r.msg }
func (r *renamed) Unwrap() error { return r.err }

// InRoot opens name, a path as a process sees it, resolved inside root (a
// process's /proc/PID/root, or "/" for the host): no symlink or ".."
// leaves root, no magic link is followed, and the last component is not
// followed unless rules say so.
func InRoot(root, name string, rules Rules) (*File, error) {
	return inRoot(root, name, rules, openat2)
}

// inRoot is InRoot with the resolver given (tests run both).
func inRoot(root, name string, rules Rules, resolve func(dir int, name string, follow bool) (int, error)) (*File, error) {
	display := filepath.Join(root, name)
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	fd, err := resolve(dir, name, rules.FollowLast)
	if errors.Is(err, unix.ENOSYS) {
		fd, err = walk(dir, name, rules.FollowLast)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return nil, refuse(display, Symlink, "%w", err)
		}
		return nil, &fs.PathError{Op: "open", Path: display, Err: err}
	}
	return finish(fd, display, rules)
}

// openat2 opens name under dir with O_PATH, resolved inside dir.
func openat2(dir int, name string, follow bool) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	if !follow {
		how.Flags |= unix.O_NOFOLLOW
	}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dir, name, &how)
		if (err == unix.EINTR || err == unix.EAGAIN) && try < 8 {
			// EAGAIN: a rename or mount raced with the lookup (the
			// kernel's guard for RESOLVE_IN_ROOT); look up again, a
			// few times: someone renaming in a loop gets a refusal.
			continue
		}
		return fd, err
	}
}

// Openat2 reports whether the kernel has openat2 (Linux 5.6); without it
// paths are walked component by component, with the same rules.
func Openat2() bool {
	fd, err := openat2(unix.AT_FDCWD, "/", true)
	if err == nil {
		unix.Close(fd)
	}
	return !errors.Is(err, unix.ENOSYS)
}

// maxLinks is how many symlinks one walk follows, as the kernel's
// MAXSYMLINKS.
const maxLinks = 40

// walk is openat2's RESOLVE_IN_ROOT done by hand, for kernels without
// openat2: each component is opened with O_PATH|O_NOFOLLOW from the
// directory before it; ".." never goes above dir; a symlink is read and
// resolved the same way, an absolute one from dir; the last one is
// followed only when follow is set (else ELOOP, as O_NOFOLLOW).
func walk(dir int, name string, follow bool) (int, error) {
	stack := []int{} // directories below dir, deepest last
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	cur := func() int {
		if len(stack) == 0 {
			return dir
		}
		return stack[len(stack)-1]
	}
	todo := splitPath(name)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".":
			continue
		case "..":
			if n := len(stack); n > 0 {
				unix.Close(stack[n-1])
				stack = stack[:n-1]
			}
			continue
		}
		fd, err := unix.Openat(cur(), c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		last := len(todo) == 0
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			if last && !follow {
				unix.Close(fd)
				return -1, unix.ELOOP
			}
			if links++; links > maxLinks {
				unix.Close(fd)
				return -1, unix.ELOOP
			}
			target, err := readlinkFd(fd)
			unix.Close(fd)
			if err != nil {
				return -1, err
			}
			if strings.HasPrefix(target, "/") {
				for _, d := range stack {
					unix.Close(d)
				}
				stack = stack[:0]
			}
			todo = append(splitPath(target), todo...)
		case last:
			return fd, nil
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			unix.Close(fd)
			return -1, unix.ENOTDIR
		default:
			stack = append(stack, fd)
		}
	}
	// The name ended in a directory (or was empty): that directory.
	return unix.Openat(cur(), ".", unix.O_PATH|unix.O_CLOEXEC, 0)
}

func splitPath(p string) []string {
	return slices.DeleteFunc(strings.Split(p, "/"), func(s string) bool { return s == "" })
}

// readlinkFd reads the symlink an O_PATH|O_NOFOLLOW fd holds.
func readlinkFd(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Mapped opens the file of mapping m of process pid: through
// /proc/PID/map_files/START-END when this process may (CAP_SYS_ADMIN or
// CAP_CHECKPOINT_RESTORE), else by m's path inside the process's root; the
// file must be the inode the mapping names.
func Mapped(procRoot string, pid int, m procfs.Mapping, rules Rules) (*File, error) {
	dir := procfs.Dir(procRoot, pid)
	mf := filepath.Join(dir, "map_files", fmt.Sprintf("%x-%x", m.Start, m.End))
	// map_files entries are the kernel's links to the mapped files:
	// followed here on purpose, as /proc/PID/exe is.
	fd, err := unix.Open(mf, unix.O_PATH|unix.O_CLOEXEC, 0)
	var f *File
	switch {
	case err == nil:
		name := filepath.Join(dir, "root", m.Path)
		if m.Deleted {
			name = mf
		}
		f, err = finish(fd, name, rules)
	case m.Deleted:
		return nil, &fs.PathError{Op: "open", Path: mf, Err: err}
	default:
		f, err = InRoot(filepath.Join(dir, "root"), m.Path, rules)
	}
	if err != nil {
		return nil, err
	}
	if !sameFile(f, m) {
		f.Close()
		return nil, refuse(f.Name(), Changed, "inode %d:%d/%d, the mapping's is %d:%d/%d",
			unix.Major(f.Stat.Dev), unix.Minor(f.Stat.Dev), f.Stat.Ino, m.Major, m.Minor, m.Inode)
	}
	return f, nil
}

// sameFile reports whether f is the file mapping m maps. Under overlayfs
// the mapping names the real (upper or lower) file, which keeps its inode
// number, while a path through the overlay reports the overlay's device.
func sameFile(f *File, m procfs.Mapping) bool {
	if f.Stat.Ino != m.Inode {
		return false
	}
	if f.Dev() == m.Dev() {
		return true
	}
	var sfs unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &sfs) == nil && sfs.Type == unix.OVERLAYFS_SUPER_MAGIC
}

// Exe opens the file process pid executes, through /proc/PID/exe (the
// kernel's link to it, whatever its name now is).
func Exe(procRoot string, pid int, rules Rules) (*File, error) {
	path := filepath.Join(procfs.Dir(procRoot, pid), "exe")
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return finish(fd, path, rules)
}

// finish checks the O_PATH descriptor fd (which it owns) under rules and
// opens the regular file it holds for reading.
func finish(fd int, display string, rules Rules) (*File, error) {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: display, Err: err}
	}
	if err := check(&st, display, rules); err != nil {
		return nil, err
	}
	// Only now is the file opened: a regular file, so O_NONBLOCK is a
	// formality; through the descriptor, so it is the inode just checked.
	rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: display, Err: err}
	}
	f := &File{File: os.NewFile(uintptr(rfd), display)}
	if err := unix.Fstat(rfd, &f.Stat); err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "fstat", Path: display, Err: err}
	}
	if f.Stat.Dev != st.Dev || f.Stat.Ino != st.Ino {
		f.Close()
		return nil, refuse(display, Changed, "re-opened as another file")
	}
	return f, nil
}

// check applies rules to a file's stat.
func check(st *unix.Stat_t, path string, rules Rules) error {
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFLNK {
		// O_PATH|O_NOFOLLOW opened the last component's symlink itself.
		return refuse(path, Symlink, "a symlink is not followed here")
	} else if t != unix.S_IFREG {
		return refuse(path, NotRegular, "%s", fileType(t))
	}
	if rules.MaxSize > 0 && st.Size > rules.MaxSize {
		return refuse(path, TooLarge, "%d bytes, at most %d", st.Size, rules.MaxSize)
	}
	if rules.Owners != nil && !slices.Contains(rules.Owners, st.Uid) {
		return refuse(path, Owner, "owned by uid %d, not %v", st.Uid, rules.Owners)
	}
	if rules.NotWritable && st.Mode&0o022 != 0 {
		return refuse(path, Writable, "mode %04o is writable by group or others", st.Mode&0o7777)
	}
	return nil
}

func fileType(t uint32) string {
	switch t {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return fmt.Sprintf("file type %#o", t)
}

// Configured opens a path an administrator named (a config's uprobe
// target), following its last component. A path through a process's root,
// /proc/PID/root/..., as a DaemonSet names the host's files, is resolved
// inside that root: the magic link itself is what InRoot from "/" refuses.
func Configured(path string, rules Rules) (*File, error) {
	rules.FollowLast = true
	if rest, ok := strings.CutPrefix(path, "/proc/"); ok {
		pid, tail, _ := strings.Cut(rest, "/")
		isPID := pid != "" && strings.Trim(pid, "0123456789") == ""
		if name, ok := strings.CutPrefix(tail, "root/"); ok && (isPID || pid == "self") {
			return InRoot("/proc/"+pid+"/root", name, rules)
		}
	}
	return InRoot("/", path, rules)
}
