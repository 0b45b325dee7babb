// Package decoder turns the bytes of BPF map keys into Prometheus label
// values. Each decoder lives in its own file; a label applies its decoders in
// order, each consuming the previous one's output.
package decoder

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// ErrSkipLabelSet tells the collector to drop the whole label set (the
// regexp decoder returns it when nothing matches).
var ErrSkipLabelSet = errors.New("label set skipped by decoder")

// Decoder transforms its input bytes into output bytes: either the input of
// the next decoder in the chain or the final label value.
type Decoder interface {
	Decode(in []byte) ([]byte, error)
}

// Env is what decoders may consult about the host. A nil field means the
// source is unavailable; decoders needing it fail at construction with a
// clear message. Tests fill it with fixtures.
type Env struct {
	// Kallsyms resolves kernel addresses (ksym, kstack, kaddrs).
	Kallsyms *symtab.Kallsyms
	// PCI is the pci.ids database (pci_* decoders).
	PCI *PCIDB
	// Cgroups resolves cgroup ids to paths (cgroup, kubernetes).
	Cgroups CgroupResolver
	// Pods names the Kubernetes pods of cgroup paths (kubernetes).
	Pods PodResolver
	// Ifnames resolves interface indexes to names (ifname); nil uses the
	// host's network interfaces.
	Ifnames func(index int) (string, error)
	// Partitions is /proc/partitions (majorminor) and ProcRoot /proc
	// (comm); empty means the host's.
	Partitions string
	ProcRoot   string
	// EbpfExporter makes decoders give ebpf_exporter's values where ours
	// differ (--metrics.prefix=ebpf_exporter): cgroup paths keep the
	// cgroup2 mount point, syscall names follow ebpf_exporter's table.
	EbpfExporter bool

	warnings []string
}

// CgroupResolver resolves a cgroup id (inode number on cgroup v2) to its path.
type CgroupResolver interface {
	Path(id uint64) (string, bool)
}

// multiDecoder ends a chain and gives several labels in place of the one
// it ends (kubernetes).
type multiDecoder interface {
	Decoder
	labelNames() []string
	// decodeLabels fills out, len(labelNames()) values.
	decodeLabels(in []byte, out []string) error
}

// generationer is a decoder whose outputs may change for the same input:
// its generation moves when they may have, and cached labels are stale.
type generationer interface {
	generation() uint64
}

// factory builds one decoder from its configuration.
type factory func(conf config.Decoder, env *Env) (Decoder, error)

// factories maps decoder names, as written in configs, to constructors.
var factories = map[string]factory{
	"cgroup":       newCgroup,
	"dname":        newDname,
	"errno":        newErrno,
	"hex":          newHex,
	"ifname":       newIfname,
	"inet_ip":      newInetIP,
	"kstack":       newKstack,
	"ksym":         newKsym,
	"majorminor":   newMajorMinor,
	"pci_class":    newPCIClass,
	"pci_device":   newPCIDevice,
	"pci_subclass": newPCISubclass,
	"pci_vendor":   newPCIVendor,
	"regexp":       newRegexp,
	"static_map":   newStaticMap,
	"string":       newString,
	"syscall":      newSyscall,
	"uint":         newUint,
	// Extensions of probe_exporter.
	"pid":        newPid,
	"comm":       newComm,
	"kubernetes": newKubernetes,
}

// Names lists the known decoder names, sorted.
func Names() []string {
	names := make([]string, 0, len(factories))
	for name := range factories {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// New builds the decoder named by conf.
func New(conf config.Decoder, env *Env) (Decoder, error) {
	f, ok := factories[conf.Name]
	if !ok {
		return nil, fmt.Errorf("unknown decoder %q (known: %s)", conf.Name, strings.Join(Names(), " "))
	}
	d, err := f(conf, env)
	if err != nil {
		return nil, fmt.Errorf("decoder %q: %w", conf.Name, err)
	}
	return d, nil
}
