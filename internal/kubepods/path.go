// Package kubepods names the Kubernetes pod and container a cgroup belongs
// to: the pod UID and container id come from the cgroup path the kubelet
// and the container runtime give it, the names from the API server (the
// pods of this node, listed and watched).
package kubepods

import "strings"

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

// Container cgroups under their pod: cri-containerd-<id>.scope,
// crio-<id>.scope, docker-<id>.scope (systemd driver), <id>, crio-<id>,
// docker-<id> (cgroupfs driver).
var runtimePrefixes = []string{"cri-containerd-", "crio-", "docker-"}

// systemdPod reads a systemd driver's pod slice: kubepods-pod<uid>.slice
// (guaranteed), kubepods-burstable-pod<uid>.slice,
// kubepods-besteffort-pod<uid>.slice, the UID's dashes escaped to
// underscores; kind and other nested kubelets prefix them
// ("kubelet-kubepods-...").
func systemdPod(c string) (Ref, bool) {
	c, ok := strings.CutSuffix(c, ".slice")
	if !ok {
		return Ref{}, false
	}
	i := strings.LastIndex(c, "-pod")
	if i < 0 {
		return Ref{}, false
	}
	parent, uid := c[:i], c[i+len("-pod"):]
	class := Guaranteed
	for _, q := range []string{Burstable, BestEffort} {
		if p, ok := strings.CutSuffix(parent, "-"+q); ok {
			parent, class = p, q
			break
		}
	}
	if parent != "kubepods" && !strings.HasSuffix(parent, "-kubepods") {
		return Ref{}, false
	}
	return Ref{PodUID: strings.ReplaceAll(uid, "_", "-"), QoS: class}, true
}

// cgroupfsPod reads a cgroupfs driver's pod directory:
// .../kubepods[/burstable|/besteffort]/pod<uid>.
func cgroupfsPod(comps []string, i int) (Ref, bool) {
	uid, ok := strings.CutPrefix(comps[i], "pod")
	switch {
	case !ok || i == 0:
		return Ref{}, false
	case comps[i-1] == "kubepods":
		return Ref{PodUID: uid, QoS: Guaranteed}, true
	case i > 1 && comps[i-2] == "kubepods" && (comps[i-1] == Burstable || comps[i-1] == BestEffort):
		return Ref{PodUID: uid, QoS: comps[i-1]}, true
	}
	return Ref{}, false
}

// containerID reads a container's cgroup name.
func containerID(c string) string {
	for _, p := range runtimePrefixes {
		if rest, ok := strings.CutPrefix(c, p); ok {
			c = rest
			break
		}
	}
	c = strings.TrimSuffix(c, ".scope")
	if len(c) != 64 || !isHex(c) {
		return ""
	}
	return c
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ParsePath reads the pod UID and container id from a cgroup path, with
// or without the mount point: cgroup v2's "/kubepods.slice/...", or a v1
// controller's same path. ok is false for cgroups outside pods.
// Cgroups below a container's (runtimes that nest one, such as crun's
// "container") belong to that container.
func ParsePath(path string) (Ref, bool) {
	comps := strings.Split(strings.Trim(path, "/"), "/")
	for i, c := range comps {
		// Cheap tests first: most components are no pod's.
		if !strings.Contains(c, "-pod") && !strings.HasPrefix(c, "pod") {
			continue
		}
		ref, ok := systemdPod(c)
		if !ok {
			ref, ok = cgroupfsPod(comps, i)
		}
		if !ok {
			continue
		}
		if !validUID(ref.PodUID) {
			continue
		}
		if i+1 < len(comps) {
			ref.ContainerID = containerID(comps[i+1])
		}
		return ref, true
	}
	return Ref{}, false
}

// validUID accepts a UID as the API server gives it (8-4-4-4-12 hex
// digits) or a static pod's config hash (32 hex digits).
func validUID(uid string) bool {
	switch len(uid) {
	case 32:
		return isHex(uid)
	case 36:
		for i := 0; i < len(uid); i++ {
			dash := i == 8 || i == 13 || i == 18 || i == 23
			if c := uid[i]; dash != (c == '-') || !dash && !isHex(uid[i:i+1]) {
				return false
			}
		}
		return true
	}
	return false
}
