// Package privdir keeps files where no one but root and the exporter's own
// user can change them.
//
// A directory is private when it and every directory above it are owned
// by root or the effective user and writable by no one else. One
// exception holds for the directories above: a sticky directory owned by
// root (like /tmp) may be writable by all, because others can add names
// to it but cannot rename or remove the entries root owns. The directory
// itself may never be writable by others.
//
// Files are written whole under a fresh name made with O_EXCL|O_NOFOLLOW
// in the same directory and renamed into place, so a name planted in the
// directory is replaced, never followed. Files are read only when regular,
// owned by root or the effective user and writable by no one else, opened
// with O_NOFOLLOW|O_NONBLOCK (a symlink fails, a FIFO cannot block).
package privdir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotPrivate is what every refusal of a directory or file wraps: it, or
// a directory above it, can be changed by a user other than root and the
// effective user.
var ErrNotPrivate = errors.New("not private")

// Error is a refusal: the path refused and why.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s is %v: %s", e.Path, ErrNotPrivate, e.Reason)
}

func (e *Error) Unwrap() error { return ErrNotPrivate }

func refuse(path, format string, args ...any) error {
	return &Error{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// trusted reports whether files of uid are trusted: root's and the
// effective user's.
func trusted(uid uint32) bool {
	return uid == 0 || uid == uint32(os.Geteuid())
}

// Check checks that dir is a private directory and returns its path with
// symlinks resolved, the path to use from then on (a symlink on the way
// may be anyone's; what it resolved to is checked).
func Check(dir string) (string, error) {
	real, open, err := walk(dir, false)
	if err != nil {
		return "", err
	}
	if open {
		return "", refuse(real, "writable by group or others")
	}
	return real, nil
}

// walk resolves dir and checks it and each directory above it, from the
// root down. open reports that dir alone fails, by being writable by
// group or others; with above, dir is checked as a directory above one
// (a sticky one of root's may be writable by all).
func walk(dir string, above bool) (real string, open bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	real, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", false, err
	}
	path := "/"
	parts := strings.Split(strings.TrimPrefix(real, "/"), "/")
	if real == "/" {
		parts = nil
	}
	for i := 0; ; i++ {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return "", false, &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		last := i == len(parts)
		sticky := st.Mode&unix.S_ISVTX != 0 && st.Uid == 0
		switch {
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			// A symlink here was put there after EvalSymlinks.
			return "", false, refuse(path, "not a directory")
		case !trusted(st.Uid):
			return "", false, refuse(path, "owned by uid %d", st.Uid)
		case st.Mode&0o022 == 0:
		case readOnly(path):
			// No one changes what a read-only mount holds (a
			// Kubernetes ConfigMap volume is one, of mode 0777).
		case last && !above:
			open = true
		case sticky:
			// Sticky and root's: the next directory, checked to be
			// trusted, cannot be renamed or removed by others.
		default:
			return "", false, refuse(path, "writable by group or others (mode %04o) and not sticky", st.Mode&0o7777)
		}
		if last {
			return real, open, nil
		}
		path = filepath.Join(path, parts[i])
	}
}

// Make creates dir, mode 0700, with what is missing above it, and checks
// it is private. An empty directory of the effective user that is
// writable by others (as Kubernetes makes an emptyDir volume, mode 0777)
// is made 0700 first: nothing in it can come from others, and once it is
// 0700 nothing can be added. One that already holds entries is refused.
func Make(dir string) (string, error) {
	// What is missing is made only under a directory that passes: root
	// makes nothing in a place others control.
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	existing := abs
	for {
		if _, err := os.Lstat(existing); err == nil || existing == "/" {
			break
		}
		existing = filepath.Dir(existing)
	}
	if existing != abs {
		if _, _, err := walk(existing, true); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", err
	}
	real, open, err := walk(abs, false)
	if err != nil || !open {
		return real, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(real, &st); err != nil {
		return "", err
	}
	if st.Uid != uint32(os.Geteuid()) {
		return "", refuse(real, "writable by group or others")
	}
	// Closed first, then looked into: what was added before is seen.
	if err := os.Chmod(real, 0o700); err != nil {
		return "", err
	}
	names, err := readNames(real)
	if err != nil {
		return "", err
	}
	if len(names) > 0 {
		return "", refuse(real, "was writable by group or others and holds %d entries (%s)", len(names), names[0])
	}
	return Check(real)
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// Temp makes a fresh private directory in the system's temporary
// directory (os.MkdirTemp: a random name, mode 0700) and checks it.
func Temp(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	real, err := Check(dir)
	if err != nil {
		os.Remove(dir)
		return "", err
	}
	return real, nil
}

// create makes a fresh file beside path, for writing path whole: a random
// name, O_EXCL|O_NOFOLLOW, mode 0600.
func create(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	for range 100 {
		var b [6]byte
		rand.Read(b[:])
		name := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(b[:]))
		fd, err := unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "create", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	return nil, fmt.Errorf("%s: no fresh temporary name", path)
}

// WriteFile writes data to path whole: to a fresh file beside it, then
// renamed over path (which replaces a symlink or file there, never
// following it). path's directory must be private.
func WriteFile(path string, data []byte) error {
	f, err := create(path)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Open opens a file for reading if it is regular, owned by root or the
// effective user and writable by no one else. A symlink is refused, not
// followed; a missing file is an error matching fs.ErrNotExist.
func Open(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, refuse(path, "a symbolic link")
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := checkFile(path, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

func checkFile(path string, st *unix.Stat_t) error {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return refuse(path, "not a regular file (mode %06o)", st.Mode)
	case !trusted(st.Uid):
		return refuse(path, "owned by uid %d", st.Uid)
	case st.Mode&0o022 != 0 && !readOnly(path):
		return refuse(path, "writable by group or others (mode %04o)", st.Mode&0o7777)
	}
	return nil
}

// readOnly reports whether path is on a read-only mount, whose files and
// directories no one can change whatever their modes say.
func readOnly(path string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && fs.Flags&unix.ST_RDONLY != 0
}

// ReadFile reads a file Open accepts, of at most max bytes.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: over %d bytes", path, max)
	}
	return data, nil
}

// CheckFile checks that path (its symlinks resolved) is a regular file
// only root or the effective user can change: owned by one of them,
// writable by no one else, in a private directory. It is how files that
// root runs or loads by path (scripts, BPF objects) are vetted before
// each use: a file that passes can only be changed by someone already
// trusted.
func CheckFile(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	if _, err := Check(filepath.Dir(real)); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(real, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: real, Err: err}
	}
	return checkFile(real, &st)
}
