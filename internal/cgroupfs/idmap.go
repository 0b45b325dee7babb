package cgroupfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"

	"github.com/cilium/ebpf"
)

// IDMap keeps a BPF map filled with the cgroups whose paths (mount point
// included, as ebpf_exporter matches them) match any of its regexps, as
// ebpf_exporter's cgroup_id_map does: a hash map keyed by cgroup id, or a
// cgrp_storage map set through a cgroup fd; the value is 1.
type IDMap struct {
	m       *ebpf.Map
	storage bool
	res     []*regexp.Regexp
	logger  *slog.Logger
}

// Map types of a cgroup_id_map, as configs name them.
const (
	TypeHash        = "hash"
	TypeCgrpStorage = "cgrp_storage"
)

// NewIDMap checks m against its type ("hash", the default, or
// "cgrp_storage") and compiles the regexps.
func NewIDMap(m *ebpf.Map, typ string, regexps []string, logger *slog.Logger) (*IDMap, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	im := &IDMap{m: m, logger: logger}
	keySize := uint32(8)
	switch typ {
	case "", TypeHash:
		if t := m.Type(); t != ebpf.Hash && t != ebpf.LRUHash {
			return nil, fmt.Errorf("type hash needs a hash or lru_hash map, not %s", t)
		}
	case TypeCgrpStorage:
		if t := m.Type(); t != ebpf.CgroupStorage {
			return nil, fmt.Errorf("type cgrp_storage needs a BPF_MAP_TYPE_CGRP_STORAGE map, not %s", t)
		}
		im.storage, keySize = true, 4
	default:
		return nil, fmt.Errorf("unknown type %q (hash or cgrp_storage)", typ)
	}
	if m.KeySize() != keySize {
		return nil, fmt.Errorf("a %s map needs %d-byte keys, it has %d", typ, keySize, m.KeySize())
	}
	if m.ValueSize() != 8 {
		return nil, fmt.Errorf("values must be 8 bytes (u64), they are %d", m.ValueSize())
	}
	if len(regexps) == 0 {
		return nil, errors.New("no regexps")
	}
	for _, expr := range regexps {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("regexp %q: %w", expr, err)
		}
		im.res = append(im.res, re)
	}
	return im, nil
}

// Run fills the map with the matching cgroups under mount and keeps it
// current until ctx ends.
func (im *IDMap) Run(ctx context.Context, mount string) error {
	return Watch(ctx, mount, im.Apply)
}

// Apply puts a matching cgroup in the map or takes a removed one out.
func (im *IDMap) Apply(ev Event) {
	if !im.matches(ev.Path) {
		return
	}
	if err := im.apply(ev); err != nil {
		im.logger.Warn("cgroup_id_map update failed", "map", im.m.String(), "cgroup", ev.Path, "removed", ev.Removed, "err", err)
	}
}

func (im *IDMap) apply(ev Event) error {
	one := uint64(1)
	switch {
	case ev.Removed && im.storage:
		// The kernel frees a cgroup's storage with the cgroup.
		return nil
	case ev.Removed:
		err := im.m.Delete(ev.ID)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return err
	case im.storage:
		dir, err := os.Open(ev.Path)
		if err != nil {
			return err
		}
		defer dir.Close()
		return im.m.Update(uint32(dir.Fd()), one, ebpf.UpdateAny)
	default:
		return im.m.Update(ev.ID, one, ebpf.UpdateAny)
	}
}

func (im *IDMap) matches(path string) bool {
	for _, re := range im.res {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}
