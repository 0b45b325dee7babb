package decoder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/probe-exporter/probe_exporter/internal/cgroupfs"
	"github.com/probe-exporter/probe_exporter/internal/kubepods"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// HostEnv describes this host: kernel symbols from /proc/kallsyms (loaded
// on first use), pci.ids, the cgroup2 hierarchy wherever it is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host), /proc,
// Kubernetes pod UIDs and container ids from cgroup paths.
func HostEnv() *Env {
	mount, err := cgroupfs.Mount("/proc/self/mountinfo")
	if err != nil {
		mount = cgroupfs.DefaultMount
	}
	env := &Env{
		Kallsyms: symtab.NewKallsyms("/proc/kallsyms"),
		Cgroups:  NewCgroupPaths(mount),
		// Pod UIDs and container ids from cgroup paths; the daemon
		// replaces it with one that asks the API server for names.
		Pods: kubepods.New(context.Background(), kubepods.Options{}),
	}
	if err != nil {
		env.warnings = append(env.warnings, fmt.Sprintf("%v; cgroup labels resolve under %s", err, mount))
	}
	db, err := LoadPCIDB()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		env.warnings = append(env.warnings, fmt.Sprintf("%v; pci_* labels show numeric ids (install Debian's pci.ids package)", err))
	case err != nil:
		env.warnings = append(env.warnings, fmt.Sprintf("%v; pci_* labels show numeric ids", err))
	default:
		env.PCI = db
	}
	return env
}

// Warnings lists what the environment lacks, for the log.
func (e *Env) Warnings() []string { return e.warnings }

// KernelAddr returns the address of a kernel symbol (for kaddrs).
func (e *Env) KernelAddr(name string) (uint64, error) {
	if e.Kallsyms == nil {
		return 0, errors.New("no kernel symbol table")
	}
	return e.Kallsyms.Addr(name)
}
