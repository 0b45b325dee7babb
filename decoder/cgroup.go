package decoder

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/probe-exporter/probe_exporter/config"
)

// cgroupDecoder turns a cgroup id (decimal, after uint; the inode number of
// the cgroup v2 directory, as bpf_get_current_cgroup_id returns) into its
// path within the hierarchy ("/system.slice/ssh.service", as
// /proc/PID/cgroup shows it), or "unknown_cgroup_id:N". In ebpf_exporter
// mode the path keeps the mount point, as ebpf_exporter gives it
// ("/sys/fs/cgroup/unified/system.slice/ssh.service" on a hybrid host).
type cgroupDecoder struct {
	r      CgroupResolver
	prefix string
}

func newCgroup(_ config.Decoder, env *Env) (Decoder, error) {
	if env == nil || env.Cgroups == nil {
		return nil, errors.New("needs the cgroup hierarchy (/sys/fs/cgroup)")
	}
	d := cgroupDecoder{r: env.Cgroups}
	if r, ok := env.Cgroups.(interface{ Root() string }); ok && env.EbpfExporter {
		d.prefix = strings.TrimSuffix(r.Root(), "/")
	}
	return d, nil
}

func (d cgroupDecoder) Decode(in []byte) ([]byte, error) {
	id, err := decimal(in)
	if err != nil {
		return nil, err
	}
	if p, ok := d.r.Path(id); ok {
		if d.prefix != "" {
			if p == "/" {
				return []byte(d.prefix), nil
			}
			return []byte(d.prefix + p), nil
		}
		return []byte(p), nil
	}
	return strconv.AppendUint([]byte("unknown_cgroup_id:"), id, 10), nil
}

// CgroupPaths resolves cgroup v2 ids by walking the hierarchy. Cgroup ids
// only grow, so a miss on an id above every id seen walks again at once
// (a cgroup created since); other misses (cgroups gone) walk at most once
// a second.
type CgroupPaths struct {
	root string

	mu       sync.Mutex
	paths    map[uint64]string
	maxID    uint64
	lastWalk time.Time
}

// NewCgroupPaths resolves ids under root, the cgroup2 mount point.
func NewCgroupPaths(root string) *CgroupPaths {
	return &CgroupPaths{root: root, paths: map[uint64]string{}}
}

// Root is the mount point the paths are relative to.
func (c *CgroupPaths) Root() string { return c.root }

// Path implements CgroupResolver. Paths are absolute within the hierarchy
// ("/system.slice/ssh.service"), as /proc/PID/cgroup shows them.
func (c *CgroupPaths) Path(id uint64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.paths[id]; ok {
		return p, true
	}
	if id <= c.maxID && time.Since(c.lastWalk) < time.Second {
		return "", false
	}
	c.walk()
	p, ok := c.paths[id]
	c.maxID = max(c.maxID, id)
	return p, ok
}

func (c *CgroupPaths) walk() {
	c.lastWalk = time.Now()
	paths := map[uint64]string{}
	maxID := uint64(0)
	_ = filepath.WalkDir(c.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			rel, _ := filepath.Rel(c.root, path)
			paths[st.Ino] = filepath.Clean("/" + rel)
			maxID = max(maxID, st.Ino)
		}
		return nil
	})
	c.paths = paths
	c.maxID = max(c.maxID, maxID)
}
