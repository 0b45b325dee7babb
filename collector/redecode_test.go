package collector

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
	"github.com/probe-exporter/probe_exporter/internal/kubepods"
)

type fixedCgroups map[uint64]string

func (f fixedCgroups) Path(id uint64) (string, bool) { p, ok := f[id]; return p, ok }

// learningPods names pods once told to, as the API resolver does when
// its watch delivers a pod after the pod's cgroup was first scraped.
type learningPods struct{ named atomic.Bool }

func (p *learningPods) Pod(path string) (string, string, string, bool) {
	ref, ok := kubepods.ParsePath(path)
	if !ok {
		return "", "", "", false
	}
	if p.named.Load() {
		return "shop", "web-0", "nginx", true
	}
	return "", ref.PodUID, ref.ContainerID, true
}

func (p *learningPods) Generation() uint64 {
	if p.named.Load() {
		return 1
	}
	return 0
}
func (p *learningPods) Start() {}

// TestKubernetesLabels: a cgroup id key gives namespace, pod and
// container labels; keys decoded before the pod's names were known are
// decoded again once they are, counters and histograms alike.
func TestKubernetesLabels(t *testing.T) {
	const (
		uid = "0b2c4d6e-8a1b-4c3d-9e5f-a7b8c9d0e1f2"
		cid = "4f1e0a6c2b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
	)
	pods := &learningPods{}
	env := &decoder.Env{
		Cgroups: fixedCgroups{
			5: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-" + cid + ".scope",
			6: "/system.slice/ssh.service",
		},
		Pods: pods,
	}
	counts := newMap(t, ebpf.Hash, 8, 16)
	put(t, counts, u64(5), 10)
	put(t, counts, u64(6), 3)
	hist := newMap(t, ebpf.Hash, 16, 16)
	put(t, hist, cat(u64(5), u64(1)), 2)
	put(t, hist, cat(u64(5), u64(3)), 1)
	kube := config.Label{Name: "pod", Size: 8, Decoders: []config.Decoder{{Name: "uint"}, {Name: "kubernetes"}}}
	cfg := config.Config{Name: "t", Metrics: config.Metrics{
		Counters: []config.Counter{{Name: "calls_total", Help: "h", Labels: []config.Label{kube}}},
		Histograms: []config.Histogram{{
			Name: "lat_seconds", Help: "h", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 3,
			Labels: []config.Label{kube, uintLabel("bucket", 8)},
		}},
	}}
	c := New(Options{Env: env})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"calls_total": counts, "lat_seconds": hist}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	want := "probe_exporter_calls_total container= namespace= pod= 3\n" +
		"probe_exporter_calls_total container=" + cid + " namespace= pod=" + uid + " 10\n" +
		"probe_exporter_lat_seconds container=" + cid + " namespace= pod=" + uid + " 1:0 2:2 4:2 8:3 count=3 sum=0\n"
	if got := scrape(t, c, "probe_exporter_calls_total", "probe_exporter_lat_seconds"); got != want {
		t.Fatalf("before the names: got\n%s\nwant\n%s", got, want)
	}
	pods.named.Store(true)
	put(t, counts, u64(5), 11)
	want = "probe_exporter_calls_total container= namespace= pod= 3\n" +
		"probe_exporter_calls_total container=nginx namespace=shop pod=web-0 11\n" +
		"probe_exporter_lat_seconds container=nginx namespace=shop pod=web-0 1:0 2:2 4:2 8:3 count=3 sum=0\n"
	if got := scrape(t, c, "probe_exporter_calls_total", "probe_exporter_lat_seconds"); got != want {
		t.Fatalf("after the names: got\n%s\nwant\n%s", got, want)
	}
}
