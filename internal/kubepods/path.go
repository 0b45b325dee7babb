// Package kubepods names the Kubernetes pod and container a cgroup belongs
// to: the pod UID and container id come from the cgroup path the kubelet
// and the container runtime give it, the names from the API server (the
// pods of this node, listed and watched).
package kubepods

import (
	"regexp"
	"strings"
)

// QoS classes, as the kubelet names its cgroups.
const (
	Guaranteed = "guaranteed"
	Burstable  = "burstable"
	BestEffort = "besteffort"
)

// Ref is what a cgroup path says about a pod.
type Ref struct {
	// PodUID is the pod's metadata.uid (the config hash for static pods),
	// with dashes, as the API server shows it.
	PodUID string
	// ContainerID is the runtime's container id (64 hex digits), empty for
	// the pod's own cgroup and for cgroups of the pod that are no
	// container's (CRI-O's conmon).
	ContainerID string
	QoS         string
}

var (
	// systemd driver: kubepods-pod<uid>.slice (guaranteed),
	// kubepods-burstable-pod<uid>.slice, kubepods-besteffort-pod<uid>.slice,
	// the UID's dashes escaped to underscores; kind and other nested
	// kubelets prefix them ("kubelet-kubepods-...").
	systemdPod = regexp.MustCompile(`^(?:[a-z0-9_.]+-)?kubepods(?:-(burstable|besteffort))?-pod([0-9a-f_]+)\.slice$`)
	// cgroupfs driver: .../kubepods[/burstable|/besteffort]/pod<uid>.
	cgroupfsPod = regexp.MustCompile(`^pod([0-9a-f-]+)$`)
	// A container under its pod: cri-containerd-<id>.scope,
	// crio-<id>.scope, docker-<id>.scope (systemd driver), <id>,
	// crio-<id>, docker-<id> (cgroupfs driver).
	containerDir = regexp.MustCompile(`^(?:cri-containerd-|crio-|docker-)?([0-9a-f]{64})(?:\.scope)?$`)
)

// ParsePath reads the pod UID and container id from a cgroup path, with
// or without the mount point: cgroup v2's "/kubepods.slice/...", or a v1
// controller's same path. ok is false for cgroups outside pods.
// Cgroups below a container's (runtimes that nest one, such as crun's
// "container") belong to that container.
func ParsePath(path string) (Ref, bool) {
	comps := strings.Split(strings.Trim(path, "/"), "/")
	for i, c := range comps {
		var ref Ref
		if m := systemdPod.FindStringSubmatch(c); m != nil {
			ref = Ref{PodUID: strings.ReplaceAll(m[2], "_", "-"), QoS: qos(m[1])}
		} else if m := cgroupfsPod.FindStringSubmatch(c); m != nil && i > 0 {
			switch {
			case comps[i-1] == "kubepods":
				ref = Ref{PodUID: m[1], QoS: Guaranteed}
			case i > 1 && comps[i-2] == "kubepods" && (comps[i-1] == Burstable || comps[i-1] == BestEffort):
				ref = Ref{PodUID: m[1], QoS: comps[i-1]}
			default:
				continue
			}
		} else {
			continue
		}
		if !validUID(ref.PodUID) {
			continue
		}
		if i+1 < len(comps) {
			if m := containerDir.FindStringSubmatch(comps[i+1]); m != nil {
				ref.ContainerID = m[1]
			}
		}
		return ref, true
	}
	return Ref{}, false
}

func qos(class string) string {
	if class == "" {
		return Guaranteed
	}
	return class
}

// validUID accepts a UID as the API server gives it (8-4-4-4-12 hex
// digits) or a static pod's config hash (32 hex digits).
func validUID(uid string) bool {
	switch len(uid) {
	case 32:
		return !strings.Contains(uid, "-")
	case 36:
		for i, c := range uid {
			if (i == 8 || i == 13 || i == 18 || i == 23) != (c == '-') {
				return false
			}
		}
		return true
	}
	return false
}
