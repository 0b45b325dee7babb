package decoder

import (
	"errors"
	"fmt"
	"io/fs"
)

// HostEnv describes this host: kernel symbols from /proc/kallsyms (loaded
// on first use), pci.ids, cgroups under /sys/fs/cgroup, /proc.
func HostEnv() *Env {
	env := &Env{
		Kallsyms: &lazyKallsyms{path: "/proc/kallsyms"},
		Cgroups:  NewCgroupPaths("/sys/fs/cgroup"),
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
	var t *KallsymsTable
	switch k := e.Kallsyms.(type) {
	case *lazyKallsyms:
		var err error
		if t, err = k.load(); err != nil {
			return 0, err
		}
	case *KallsymsTable:
		t = k
	default:
		return 0, errors.New("no kernel symbol table")
	}
	addr, ok := t.Addr(name)
	if !ok {
		return 0, fmt.Errorf("kernel symbol %q not found in /proc/kallsyms", name)
	}
	return addr, nil
}
