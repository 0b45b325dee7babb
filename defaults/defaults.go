// Package defaults embeds the programs probe_exporter runs when no config
// directory is given: syscalls by name, block IO latency and size, and
// run-queue latency. They use only tracepoints, raw tracepoints and tp_btf,
// so they load on any kernel >= 5.8 with BTF. The objects are built from
// the .bpf.c files beside them (make bpf) and committed.
package defaults

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/probe-exporter/probe_exporter/config"
)

//go:embed *.yaml *.bpf.o
var files embed.FS

// Names lists the embedded configs.
func Names() []string {
	entries, _ := fs.Glob(files, "*.yaml")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e, ".yaml"))
	}
	return names
}

// Configs returns the embedded configs with their objects.
func Configs() ([]config.Config, error) {
	var cfgs []config.Config
	for _, name := range Names() {
		data, err := files.ReadFile(name + ".yaml")
		if err != nil {
			return nil, err
		}
		got, err := config.Parse(path.Join("embedded", name+".yaml"), data)
		if err != nil {
			return nil, fmt.Errorf("embedded config %s: %w", name, err)
		}
		obj, err := files.ReadFile(name + ".bpf.o")
		if err != nil {
			return nil, fmt.Errorf("embedded config %s: %w", name, err)
		}
		for i := range got {
			got[i].Name = name
			got[i].Path = ""
			got[i].Object = obj
		}
		cfgs = append(cfgs, got...)
	}
	return cfgs, nil
}
