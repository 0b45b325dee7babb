package cgroupfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Event is a cgroup appearing or going away.
type Event struct {
	// ID is the cgroup id: the inode number of its directory, as
	// bpf_get_current_cgroup_id returns it.
	ID uint64
	// Path is the cgroup's directory, mount point included
	// ("/sys/fs/cgroup/system.slice/ssh.service").
	Path    string
	Removed bool
}

// Watch reports every cgroup under mount, first those that exist and then,
// until ctx ends, those created and removed, to fn (called from one
// goroutine). It follows the hierarchy with inotify: a watch on every
// directory, added before the directory is listed, so that no cgroup created
// meanwhile is missed.
func Watch(ctx context.Context, mount string, fn func(Event)) error {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	// A non-blocking fd in an os.File goes through the runtime poller:
	// Close interrupts a blocked Read.
	f := os.NewFile(uintptr(fd), "inotify")
	w := &watcher{fd: fd, root: mount, fn: fn, byWatch: map[int32]string{}, ids: map[string]uint64{}}
	if err := w.add(mount); err != nil {
		f.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading inotify events: %w", err)
		}
		w.handle(buf[:n])
	}
}

type watcher struct {
	fd      int
	root    string
	fn      func(Event)
	byWatch map[int32]string  // watch descriptor -> directory
	ids     map[string]uint64 // directory -> cgroup id
}

// add watches dir and every directory below it, reporting each as a new
// cgroup. Directories that vanish meanwhile are skipped.
func (w *watcher) add(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("cgroup hierarchy %s: %w", dir, err)
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if _, known := w.ids[path]; known {
			return nil
		}
		wd, err := unix.InotifyAddWatch(w.fd, path, unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_MOVED_TO|unix.IN_ONLYDIR)
		if err != nil {
			if errors.Is(err, unix.ENOENT) && path != dir {
				return fs.SkipDir
			}
			return fmt.Errorf("watching %s: %w", path, err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return fs.SkipDir
		}
		w.byWatch[int32(wd)] = path
		w.ids[path] = st.Ino
		w.fn(Event{ID: st.Ino, Path: path})
		return nil
	})
}

// handle processes a buffer of inotify events.
func (w *watcher) handle(buf []byte) {
	for len(buf) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		size := unix.SizeofInotifyEvent + int(ev.Len)
		if size > len(buf) {
			return
		}
		name := ""
		if ev.Len > 0 {
			raw := buf[unix.SizeofInotifyEvent:size]
			for i, c := range raw {
				if c == 0 {
					raw = raw[:i]
					break
				}
			}
			name = string(raw)
		}
		buf = buf[size:]
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			w.resync()
			continue
		}
		if ev.Mask&unix.IN_IGNORED != 0 {
			delete(w.byWatch, ev.Wd)
			continue
		}
		parent, ok := w.byWatch[ev.Wd]
		if !ok || ev.Mask&unix.IN_ISDIR == 0 || name == "" {
			continue
		}
		path := filepath.Join(parent, name)
		switch {
		case ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			_ = w.add(path)
		case ev.Mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
			w.remove(path)
		}
	}
}

// remove reports path and every cgroup below it as gone.
func (w *watcher) remove(path string) {
	prefix := path + "/"
	for p, id := range w.ids {
		if p == path || len(p) > len(prefix) && p[:len(prefix)] == prefix {
			delete(w.ids, p)
			w.fn(Event{ID: id, Path: p, Removed: true})
		}
	}
}

// resync, after the kernel dropped events, reports what changed since.
func (w *watcher) resync() {
	for p, id := range w.ids {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil || st.Ino != id {
			delete(w.ids, p)
			w.fn(Event{ID: id, Path: p, Removed: true})
		}
	}
	_ = w.add(w.root)
}
