package usdt

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Attacher attaches programs built with libbpf's <bpf/usdt.bpf.h> to USDT
// probes: each probe site gets a spec in __bpf_usdt_specs and its uprobe
// carries the spec id as BPF cookie, as libbpf does.
type Attacher struct {
	specs *ebpf.Map
	ips   *ebpf.Map

	mu   sync.Mutex
	next uint32
	// ids reuses the spec of identical argument layouts.
	ids map[string]uint32
}

// NewAttacher fills specs (__bpf_usdt_specs) and, when not nil, ips
// (__bpf_usdt_ip_to_spec_id, used by kernels without BPF cookies). With
// no specs map (programs that read no arguments) probes get no spec.
func NewAttacher(specs, ips *ebpf.Map) *Attacher {
	return &Attacher{specs: specs, ips: ips, ids: map[string]uint32{}}
}

// Attach attaches prog to every site of provider:name in the ELF file at
// path (for a process in a container, its /proc/PID/root/... path). A
// site's semaphore, if any, is counted up by the kernel for every process
// mapping the file, including processes started later. pid > 0 restricts
// the probe to that process.
func (a *Attacher) Attach(prog *ebpf.Program, path, provider, name string, pid int) ([]link.Link, error) {
	notes, err := ReadNotes(path)
	if err != nil {
		return nil, err
	}
	var sites []Note
	for _, n := range notes {
		if n.Name == name && (provider == "" || n.Provider == provider) {
			sites = append(sites, n)
		}
	}
	if len(sites) == 0 {
		probes, _ := Probes(path)
		have := "none"
		if len(probes) > 0 {
			have = strings.Join(probes, ", ")
		}
		return nil, fmt.Errorf("usdt probe %s:%s not found in %s (it has: %s)", provider, name, path, have)
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("usdt: %s: %w", path, err)
	}
	var links []link.Link
	fail := func(err error) ([]link.Link, error) {
		for _, l := range links {
			l.Close()
		}
		return nil, err
	}
	for _, n := range sites {
		id, err := a.spec(n)
		if err != nil {
			return fail(fmt.Errorf("usdt %s:%s at %#x in %s: %w", n.Provider, n.Name, n.Location, path, err))
		}
		if a.ips != nil && a.specs != nil {
			// Only consulted without cookie support; best effort.
			_ = a.ips.Put(int64(n.Location), id)
		}
		l, err := ex.Uprobe(n.Provider+":"+n.Name, prog, &link.UprobeOptions{
			Address:      n.LocationOffset,
			RefCtrOffset: n.SemaphoreOffset,
			Cookie:       uint64(id),
			PID:          pid,
		})
		if err != nil {
			return fail(fmt.Errorf("usdt %s:%s in %s: %w", n.Provider, n.Name, path, err))
		}
		links = append(links, l)
	}
	return links, nil
}

// spec stores the site's argument spec and returns its id.
func (a *Attacher) spec(n Note) (uint32, error) {
	if a.specs == nil {
		return 0, nil
	}
	args, err := ParseArgs(n.Args, runtime.GOARCH)
	if err != nil {
		return 0, err
	}
	data, err := EncodeSpec(args, 0)
	if err != nil {
		return 0, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if id, ok := a.ids[string(data)]; ok {
		return id, nil
	}
	if a.specs.ValueSize() != uint32(len(data)) {
		return 0, fmt.Errorf("__bpf_usdt_specs values are %d bytes, not libbpf's %d", a.specs.ValueSize(), len(data))
	}
	if a.next >= a.specs.MaxEntries() {
		return 0, errors.New("__bpf_usdt_specs is full")
	}
	id := a.next
	if err := a.specs.Put(id, data); err != nil {
		return 0, fmt.Errorf("writing usdt spec: %w", err)
	}
	a.next++
	a.ids[string(data)] = id
	return id, nil
}

// Close forgets the specs (the maps belong to the object).
func (a *Attacher) Close() error { return nil }
