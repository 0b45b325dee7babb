package services

import (
	"context"
	"fmt"

	"github.com/probe-exporter/probe_exporter/internal/cgroupfs"
	"github.com/probe-exporter/probe_exporter/loader"
)

// startCgroupIDMap fills the config's cgroup_id_map, if it has one, with
// the cgroups matching its regexps and keeps it current until the object
// closes. A map that cannot be filled fails the config, as in
// ebpf_exporter: its programs would count the wrong cgroups.
func (cs *Configs) startCgroupIDMap(obj *loader.Object) {
	c := obj.Config.CgroupIDMap
	if c.Name == "" || obj.Err != nil {
		return
	}
	fail := func(err error) {
		obj.Err = fmt.Errorf("%s: cgroup_id_map %q: %w", obj.Config.At(c.Line), c.Name, err)
	}
	m := obj.Map(c.Name)
	if m == nil {
		fail(fmt.Errorf("the object has no map %q", c.Name))
		return
	}
	im, err := cgroupfs.NewIDMap(m, c.Type, c.Regexps, cs.opts.Logger.With("config", obj.Config.Name))
	if err != nil {
		fail(err)
		return
	}
	mount, err := cgroupfs.Mount("/proc/self/mountinfo")
	if err != nil {
		fail(err)
		return
	}
	ctx, cancel := context.WithCancel(cs.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := im.Run(ctx, mount); err != nil {
			cs.opts.Logger.Error("cgroup_id_map stopped following cgroups", "config", obj.Config.Name, "map", c.Name, "err", err)
		}
	}()
	obj.OnClose(func() { cancel(); <-done })
}
