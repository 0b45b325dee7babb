package loader

import (
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// attachXDP attaches prog to the interface named ifname with a BPF link,
// in the driver's mode when it has one and in generic mode otherwise, as
// libbpf's bpf_program__attach_xdp does.
func attachXDP(prog *ebpf.Program, ifname string) (link.Link, error) {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("xdp %s: no such network interface in the exporter's network namespace: %w", ifname, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index})
	if err != nil {
		return nil, fmt.Errorf("xdp %s (ifindex %d): %w", ifname, iface.Index, err)
	}
	return l, nil
}
