package kubepods

import "testing"

func TestParsePath(t *testing.T) {
	const (
		uid  = "0b2c4d6e-8a1b-4c3d-9e5f-a7b8c9d0e1f2"
		uidU = "0b2c4d6e_8a1b_4c3d_9e5f_a7b8c9d0e1f2"
		cid  = "4f1e0a6c2b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
		hash = "7cf2a9c1f4b5d6e7f8a9b0c1d2e3f4a5" // a static pod's config hash
	)
	for _, tc := range []struct {
		name, path string
		want       Ref
		ok         bool
	}{
		// systemd driver (cgroup v2, and v1 controllers' same paths)
		{"systemd containerd burstable", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Ref{PodUID: uid, ContainerID: cid, QoS: Burstable}, true},
		{"systemd containerd besteffort", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Ref{PodUID: uid, ContainerID: cid, QoS: BestEffort}, true},
		{"systemd containerd guaranteed", "/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Ref{PodUID: uid, ContainerID: cid, QoS: Guaranteed}, true},
		{"systemd crio", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope",
			Ref{PodUID: uid, ContainerID: cid, QoS: Burstable}, true},
		{"systemd crio nested container cgroup", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope/container",
			Ref{PodUID: uid, ContainerID: cid, QoS: Burstable}, true},
		{"systemd crio conmon", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope",
			Ref{PodUID: uid, QoS: Burstable}, true},
		{"systemd docker", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/docker-" + cid + ".scope",
			Ref{PodUID: uid, ContainerID: cid, QoS: BestEffort}, true},
		{"systemd pod cgroup itself", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice",
			Ref{PodUID: uid, QoS: Burstable}, true},
		{"systemd static pod hash", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + hash + ".slice/cri-containerd-" + cid + ".scope",
			Ref{PodUID: hash, ContainerID: cid, QoS: Burstable}, true},
		{"systemd kind node (nested kubelet)", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Ref{PodUID: uid, ContainerID: cid, QoS: BestEffort}, true},
		{"with the v2 mount point", "/sys/fs/cgroup/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Ref{PodUID: uid, ContainerID: cid, QoS: Guaranteed}, true},
		{"v1 controller mount point", "/sys/fs/cgroup/cpu,cpuacct/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/docker-" + cid + ".scope",
			Ref{PodUID: uid, ContainerID: cid, QoS: Burstable}, true},

		// cgroupfs driver
		{"cgroupfs burstable", "/kubepods/burstable/pod" + uid + "/" + cid,
			Ref{PodUID: uid, ContainerID: cid, QoS: Burstable}, true},
		{"cgroupfs besteffort", "/kubepods/besteffort/pod" + uid + "/" + cid,
			Ref{PodUID: uid, ContainerID: cid, QoS: BestEffort}, true},
		{"cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid,
			Ref{PodUID: uid, ContainerID: cid, QoS: Guaranteed}, true},
		{"cgroupfs crio", "/kubepods/burstable/pod" + uid + "/crio-" + cid,
			Ref{PodUID: uid, ContainerID: cid, QoS: Burstable}, true},
		{"cgroupfs pod cgroup itself", "/kubepods/besteffort/pod" + uid,
			Ref{PodUID: uid, QoS: BestEffort}, true},
		{"cgroupfs v1 memory controller", "/sys/fs/cgroup/memory/kubepods/burstable/pod" + uid + "/" + cid,
			Ref{PodUID: uid, ContainerID: cid, QoS: Burstable}, true},

		// not pods
		{"root", "/", Ref{}, false},
		{"system service", "/system.slice/containerd.service", Ref{}, false},
		{"kubepods slice", "/kubepods.slice/kubepods-burstable.slice", Ref{}, false},
		{"cgroupfs qos dir", "/kubepods/burstable", Ref{}, false},
		{"pod dir outside kubepods", "/user.slice/pod" + uid, Ref{}, false},
		{"cgroupfs pod under another class", "/kubepods/other/pod" + uid + "/" + cid, Ref{}, false},
		{"short uid", "/kubepods.slice/kubepods-pod0b2c4d6e.slice", Ref{}, false},
		{"uid with misplaced dashes", "/kubepods/pod0b2c4d6e8-a1b-4c3d-9e5f-a7b8c9d0e1f2/" + cid, Ref{}, false},
		{"not a container id", "/kubepods/pod" + uid + "/" + cid[:12], Ref{PodUID: uid, QoS: Guaranteed}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParsePath(tc.path)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("ParsePath(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
			}
		})
	}
}
