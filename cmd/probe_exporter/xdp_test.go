package main

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// xdpCountProg counts packets arriving on its interface by ethertype, IP
// protocol and destination port, the key of ebpf_exporter's xdp example.
const xdpCountProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct pkt { u16 eth; u16 proto; u16 port; };

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct pkt);
	__type(value, u64);
} xdp_incoming_packets_total SEC(".maps");

SEC("xdp/IFNAME")
int count_packets(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct pkt k = {};
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	k.eth = bpf_ntohs(eth->h_proto);
	if (k.eth == 0x0800) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		k.proto = ip->protocol;
		if (k.proto == 17 && ip->ihl == 5) {
			struct udphdr *udp = (void *)(ip + 1);
			if ((void *)(udp + 1) > end)
				return XDP_PASS;
			k.port = bpf_ntohs(udp->dest);
		}
	}
	u64 one = 1, *v = bpf_map_lookup_elem(&xdp_incoming_packets_total, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&xdp_incoming_packets_total, &k, &one, BPF_NOEXIST);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
`

const xdpCountYAML = `metrics:
  counters:
    - name: xdp_incoming_packets_total
      help: Incoming packets by protocol and port
      labels:
        - name: ip
          size: 2
          decoders:
            - name: uint
            - name: static_map
              static_map:
                2048: ipv4
                34525: ipv6
        - name: protocol
          size: 2
          decoders:
            - name: uint
            - name: static_map
              static_map:
                1: icmp
                6: tcp
                17: udp
        - name: dst_port
          size: 2
          decoders:
            - name: uint
`

// TestXDPConfig: an ebpf_exporter-style xdp/IFNAME config attaches to the
// host end of a veth whose other end is in a namespace the test made; the
// test sends UDP packets from inside that namespace, over the veth only,
// and finds them counted on /metrics.
func TestXDPConfig(t *testing.T) {
	v := testkit.VethNetns(t)
	dir := t.TempDir()
	writeConfig(t, dir, "xdp", strings.Replace(xdpCountProg, "IFNAME", v.Host, 1), xdpCountYAML)
	addr := exporter(t, "--config.dir="+dir, "--config.names=xdp")
	if up := series(t, addr, `probe_exporter_config_up{config="xdp"}`); !hasLine(up, `probe_exporter_config_up{config="xdp"} 1`) {
		t.Fatalf("xdp config not up: %v", up)
	}
	const n = 300
	testkit.InNetns(t, v.NSPath, func() {
		conn, err := net.ListenPacket("udp4", v.PeerAddr+":0")
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		to := &net.UDPAddr{IP: net.ParseIP(v.HostAddr), Port: 7777}
		for range n {
			if _, err := conn.WriteTo([]byte("probe_exporter xdp"), to); err != nil {
				t.Error(err)
				return
			}
		}
	})
	want := `probe_exporter_xdp_incoming_packets_total{dst_port="7777",ip="ipv4",protocol="udp"} ` + strconv.Itoa(n)
	waitFor(t, addr, "probe_exporter_xdp_incoming_packets_total", want)
}
