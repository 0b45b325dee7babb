// Package deploy checks the shipped deployment files: every Kubernetes
// manifest against the Kubernetes OpenAPI schema, and the DaemonSet's
// security context by running the image's root file system with exactly
// the capabilities, mounts and host namespaces the manifest grants.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Documents splits a multi-document YAML file into its documents, each
// as JSON (what the API server receives from kubectl).
func Documents(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs [][]byte
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if v == nil {
			continue
		}
		j, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, len(docs)+1, err)
		}
		docs = append(docs, j)
	}
}

// DaemonSet returns the file's DaemonSet, decoded into the API type.
func DaemonSet(path string) (*appsv1.DaemonSet, error) {
	docs, err := Documents(path)
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		var meta struct{ Kind string }
		if err := json.Unmarshal(d, &meta); err != nil {
			return nil, err
		}
		if meta.Kind != "DaemonSet" {
			continue
		}
		var ds appsv1.DaemonSet
		dec := json.NewDecoder(bytes.NewReader(d))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ds); err != nil {
			return nil, fmt.Errorf("%s: DaemonSet: %w", path, err)
		}
		return &ds, nil
	}
	return nil, fmt.Errorf("%s: no DaemonSet", path)
}

// Mount is one volume mount of the container with its volume's source.
type Mount struct {
	Name, Path string
	ReadOnly   bool
	HostPath   string // a hostPath volume
	EmptyDir   bool
	ConfigMap  string // a configMap volume's name
	Mode       int32  // the configMap's defaultMode
}

// Container is what the DaemonSet's first container is granted.
type Container struct {
	Image        string
	Command      []string // the image's entrypoint when empty
	Args         []string
	Caps         []string // CAP_ names added, after dropping ALL
	HostPID      bool
	NoNewPrivs   bool
	ReadOnlyRoot bool
	Privileged   bool
	RunAsUser    int64
	Mounts       []Mount
}

// ContainerOf reads the grants of the DaemonSet's first container; it
// refuses what the test cannot reproduce (capabilities without drop ALL,
// volume kinds it does not know).
func ContainerOf(ds *appsv1.DaemonSet) (Container, error) {
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) == 0 {
		return Container{}, errors.New("DaemonSet has no container")
	}
	c := spec.Containers[0]
	out := Container{Image: c.Image, Command: c.Command, Args: c.Args, HostPID: spec.HostPID}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		return out, errors.New("container has no securityContext.capabilities")
	}
	dropAll := false
	for _, d := range sc.Capabilities.Drop {
		dropAll = dropAll || strings.EqualFold(string(d), "ALL")
	}
	if !dropAll {
		return out, errors.New("capabilities do not drop ALL: the runtime's default set would be added")
	}
	for _, a := range sc.Capabilities.Add {
		out.Caps = append(out.Caps, "CAP_"+strings.ToUpper(strings.TrimPrefix(string(a), "CAP_")))
	}
	// The test runs the exporter under no seccomp filter and no LSM
	// profile: the manifest must ask for none, or a node would confine
	// what the test proved unconfined (the runtime's default seccomp
	// profile refuses bpf() and perf_event_open(); its default AppArmor
	// profile, on Debian and Ubuntu nodes, refuses reading the /proc
	// files of host processes).
	seccomp := sc.SeccompProfile
	if seccomp == nil && spec.SecurityContext != nil {
		seccomp = spec.SecurityContext.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeUnconfined {
		return out, errors.New("seccompProfile is not Unconfined: the runtime's default profile refuses bpf() and perf_event_open()")
	}
	apparmor := sc.AppArmorProfile
	if apparmor == nil && spec.SecurityContext != nil {
		apparmor = spec.SecurityContext.AppArmorProfile
	}
	if apparmor == nil || apparmor.Type != corev1.AppArmorProfileTypeUnconfined {
		return out, errors.New("appArmorProfile is not Unconfined: on AppArmor nodes the runtime's default profile refuses reading host processes' /proc/PID/exe, maps and root")
	}
	if sc.Privileged != nil {
		out.Privileged = *sc.Privileged
	}
	if sc.AllowPrivilegeEscalation != nil {
		out.NoNewPrivs = !*sc.AllowPrivilegeEscalation
	}
	if sc.ReadOnlyRootFilesystem != nil {
		out.ReadOnlyRoot = *sc.ReadOnlyRootFilesystem
	}
	if sc.RunAsUser != nil {
		out.RunAsUser = *sc.RunAsUser
	}
	volumes := map[string]int{}
	for i, v := range spec.Volumes {
		volumes[v.Name] = i
	}
	for _, vm := range c.VolumeMounts {
		i, ok := volumes[vm.Name]
		if !ok {
			return out, fmt.Errorf("volumeMount %q has no volume", vm.Name)
		}
		v := spec.Volumes[i]
		m := Mount{Name: vm.Name, Path: vm.MountPath, ReadOnly: vm.ReadOnly}
		switch {
		case v.HostPath != nil:
			m.HostPath = v.HostPath.Path
		case v.EmptyDir != nil:
			m.EmptyDir = true
		case v.ConfigMap != nil:
			m.ConfigMap = v.ConfigMap.Name
			m.Mode = 0o644
			if v.ConfigMap.DefaultMode != nil {
				m.Mode = *v.ConfigMap.DefaultMode
			}
		default:
			return out, fmt.Errorf("volume %q: a kind this test does not reproduce", v.Name)
		}
		out.Mounts = append(out.Mounts, m)
	}
	return out, nil
}
