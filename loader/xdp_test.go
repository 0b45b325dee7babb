package loader

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// xdpProg counts IPv4 UDP packets to port 7777 arriving on its interface.
const xdpProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} udp_7777_packets_total SEC(".maps");

SEC("xdp/IFNAME")
int count_udp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(0x0800))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->protocol != 17 || ip->ihl != 5)
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(7777))
		return XDP_PASS;
	u32 zero = 0;
	u64 *v = bpf_map_lookup_elem(&udp_7777_packets_total, &zero);
	if (v)
		__sync_fetch_and_add(v, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
`

// TestXDP attaches SEC("xdp/IFNAME") to a veth inside a network namespace
// the test made (the loader resolving the name there) and counts the UDP
// packets the test sends into it.
func TestXDP(t *testing.T) {
	v := testkit.VethNetns(t)
	nsPath, peer, peerAddr := v.NSPath, v.Peer, v.PeerAddr
	dir := t.TempDir()
	obj := testkit.CompileBPF(t, strings.Replace(xdpProg, "IFNAME", peer, 1), dir, "xdp")
	var o *Object
	testkit.InNetns(t, nsPath, func() {
		o = Load(context.Background(), config.Config{Name: "xdp", BPFPath: obj}, Options{})
	})
	defer o.Close()
	if errs := o.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if p := o.Programs[0]; !p.Attached() || p.Attach.String() != "xdp "+peer {
		t.Fatalf("program %s attached=%v", p.Attach, p.Attached())
	}
	// An unconnected socket: the peer's ICMP port unreachable replies do
	// not turn into errors of later writes.
	conn, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := &net.UDPAddr{IP: net.ParseIP(peerAddr), Port: 7777}
	const n = 500
	for range n {
		if _, err := conn.WriteTo([]byte("probe_exporter xdp test"), to); err != nil {
			t.Fatal(err)
		}
	}
	var got uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := o.Map("udp_7777_packets_total").Lookup(uint32(0), &got); err != nil {
			t.Fatal(err)
		}
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got != n {
		t.Fatalf("xdp counted %d packets, sent %d", got, n)
	}
}

func TestXDPErrors(t *testing.T) {
	for _, tc := range []struct{ sec, want string }{
		{"xdp/nosuchif0", "xdp nosuchif0: no such network interface in the exporter's network namespace"},
	} {
		dir := t.TempDir()
		obj := testkit.CompileBPF(t, strings.Replace(xdpProg, "xdp/IFNAME", tc.sec, 1), dir, "xdp")
		o := Load(context.Background(), config.Config{Name: "xdp", BPFPath: obj}, Options{})
		defer o.Close()
		if p := o.Programs[0]; p.Err == nil || !strings.Contains(p.Err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.sec, p.Err, tc.want)
		}
	}
}

func TestParseXDPSection(t *testing.T) {
	for _, tc := range []struct {
		sec    string
		want   Attachment
		noAuto bool
	}{
		{sec: "xdp/lo", want: Attachment{Kind: AttachXDP, Target: "lo"}},
		{sec: "xdp.frags/eth0", want: Attachment{Kind: AttachXDP, Target: "eth0"}},
		{sec: "xdp", noAuto: true},
		{sec: "xdp/devmap", noAuto: true},
		{sec: "xdp/cpumap", noAuto: true},
	} {
		got, err := ParseSection(tc.sec)
		if tc.noAuto {
			if err != errNoAutoAttach {
				t.Errorf("%s: %+v, %v; want no attach point", tc.sec, got, err)
			}
			continue
		}
		if err != nil || got.Kind != tc.want.Kind || got.Target != tc.want.Target {
			t.Errorf("%s: %+v, %v; want %+v", tc.sec, got, err, tc.want)
		}
	}
}
