package decoder

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/probe-exporter/probe_exporter/config"
)

// PodResolver names the Kubernetes pod and container a cgroup belongs to
// (the kubernetes decoder; package kubepods).
type PodResolver interface {
	// Pod returns the names for the cgroup at path (as CgroupResolver
	// gives it); ok is false outside pods.
	Pod(cgroupPath string) (namespace, pod, container string, ok bool)
	// Generation changes whenever a name Pod gives may have changed.
	Generation() uint64
	// Start begins learning names (from the API server); decoders call
	// it when a config uses them.
	Start()
}

// kubernetesLabels are the labels the kubernetes decoder gives, in order,
// as kube-state-metrics and cAdvisor name them.
var kubernetesLabels = []string{"namespace", "pod", "container"}

// kubernetesDecoder turns a cgroup id (decimal, after uint; what
// bpf_get_current_cgroup_id returns) into three labels, namespace, pod and
// container, in place of the label it ends (which must be named one of
// them). ebpf_exporter's model is one label per decoder chain; a chain
// giving three keeps the key to one 8-byte id where three chains would
// need the id three times. The pod UID and
// container id come from the cgroup's path; the names from the API server
// when the exporter runs in a pod (PodResolver), else the pod label is the
// UID, the container label the id and the namespace empty. Cgroups outside
// pods give three empty values (no labels). Ids of cgroups gone drop the
// label set: their counts cannot be told apart from the host's, and a
// deleted pod's series end (its names are kept a while, see kubepods).
type kubernetesDecoder struct {
	cgroups CgroupResolver
	root    string // the hierarchy's mount point, when the resolver has one
	pods    PodResolver
}

func newKubernetes(_ config.Decoder, env *Env) (Decoder, error) {
	if env == nil || env.Cgroups == nil {
		return nil, errors.New("needs the cgroup hierarchy (/sys/fs/cgroup)")
	}
	if env.Pods == nil {
		return nil, errors.New("needs a Kubernetes pod resolver")
	}
	env.Pods.Start()
	d := kubernetesDecoder{cgroups: env.Cgroups, pods: env.Pods}
	if r, ok := env.Cgroups.(interface{ Root() string }); ok {
		d.root = r.Root()
	}
	return d, nil
}

// Decode is not used: the decoder gives several labels (multiDecoder).
func (d kubernetesDecoder) Decode([]byte) ([]byte, error) {
	return nil, errors.New("gives the labels namespace, pod and container: it must end its chain")
}

func (d kubernetesDecoder) labelNames() []string { return kubernetesLabels }

func (d kubernetesDecoder) decodeLabels(in []byte, out []string) error {
	id, err := decimal(in)
	if err != nil {
		return err
	}
	path, ok := d.cgroups.Path(id)
	if ok && d.root != "" {
		// The resolver's cache may hold cgroups removed since.
		_, err := os.Stat(filepath.Join(d.root, path))
		ok = err == nil
	}
	if !ok {
		return ErrSkipLabelSet
	}
	out[0], out[1], out[2], _ = d.pods.Pod(path)
	return nil
}

func (d kubernetesDecoder) generation() uint64 { return d.pods.Generation() }
