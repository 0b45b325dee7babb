package decoder

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/cgroupfs"
	"github.com/probe-exporter/probe_exporter/internal/kubepods"
)

const (
	kubeUID = "0b2c4d6e-8a1b-4c3d-9e5f-a7b8c9d0e1f2"
	kubeCID = "4f1e0a6c2b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
)

// mapCgroups resolves fixed ids.
type mapCgroups map[uint64]string

func (m mapCgroups) Path(id uint64) (string, bool) { p, ok := m[id]; return p, ok }

// namedPods names one pod, with a generation the test moves.
type namedPods struct {
	gen     uint64
	started bool
}

func (p *namedPods) Pod(path string) (string, string, string, bool) {
	ref, ok := kubepods.ParsePath(path)
	if !ok {
		return "", "", "", false
	}
	if ref.PodUID == kubeUID && p.gen > 0 {
		c := ref.ContainerID
		if c == kubeCID {
			c = "nginx"
		}
		return "shop", "web-0", c, true
	}
	return "", ref.PodUID, ref.ContainerID, true
}
func (p *namedPods) Generation() uint64 { return p.gen }
func (p *namedPods) Start()             { p.started = true }

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func kubeLabel(name string) config.Label {
	return config.Label{Name: name, Size: 8, Decoders: []config.Decoder{{Name: "uint"}, {Name: "kubernetes"}}}
}

func TestKubernetes(t *testing.T) {
	sysd := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(kubeUID, "-", "_") + ".slice/cri-containerd-" + kubeCID + ".scope"
	env := &Env{
		Cgroups: mapCgroups{
			10: sysd,
			11: "/kubepods/besteffort/pod" + kubeUID + "/" + kubeCID,
			12: "/kubepods/pod" + kubeUID,
			13: "/system.slice/ssh.service",
			14: "/kubepods/burstable/pod66666666-7777-4888-9999-aaaaaaaaaaaa/" + strings.Repeat("ab", 32),
		},
	}
	pods := &namedPods{}
	env.Pods = pods
	labels, err := NewLabels([]config.Label{
		{Name: "comm", Size: 4, Decoders: []config.Decoder{{Name: "uint"}}},
		kubeLabel("pod"),
	}, env)
	if err != nil {
		t.Fatal(err)
	}
	if !pods.started {
		t.Error("the decoder did not start the resolver")
	}
	if got, want := labels.Names(), []string{"comm", "namespace", "pod", "container"}; !slices.Equal(got, want) {
		t.Fatalf("names %q, want %q", got, want)
	}
	key := func(id uint64) []byte { return append([]byte{7, 0, 0, 0}, u64(id)...) }
	for _, tc := range []struct {
		name string
		id   uint64
		gen  uint64
		want []string
	}{
		{"systemd, names unknown", 10, 0, []string{"7", "", kubeUID, kubeCID}},
		{"cgroupfs, names unknown", 11, 0, []string{"7", "", kubeUID, kubeCID}},
		{"systemd, named", 10, 1, []string{"7", "shop", "web-0", "nginx"}},
		{"cgroupfs, named", 11, 1, []string{"7", "shop", "web-0", "nginx"}},
		{"pod cgroup", 12, 1, []string{"7", "shop", "web-0", ""}},
		{"other pod", 14, 1, []string{"7", "", "66666666-7777-4888-9999-aaaaaaaaaaaa", strings.Repeat("ab", 32)}},
		{"host cgroup", 13, 1, []string{"7", "", "", ""}},
		{"gone cgroup", 99, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods.gen = tc.gen
			if g := labels.Generation(); g != tc.gen {
				t.Errorf("generation %d, want %d", g, tc.gen)
			}
			got, err := labels.Decode(key(tc.id))
			if tc.want == nil {
				if !errors.Is(err, ErrSkipLabelSet) {
					t.Fatalf("%q, %v; want the label set dropped", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}

	for _, tc := range []struct {
		name   string
		labels []config.Label
		err    string
	}{
		{"not last", []config.Label{{Name: "pod", Size: 8, Decoders: []config.Decoder{{Name: "uint"}, {Name: "kubernetes"}, {Name: "string"}}}},
			`label "pod": decoder "kubernetes" gives the labels namespace, pod, container: it must end the chain`},
		{"other name", []config.Label{kubeLabel("cgroup")},
			`label "cgroup": decoder "kubernetes" gives the labels namespace, pod, container in place of this one: name it one of them`},
		{"clash", []config.Label{{Name: "namespace", Size: 4, Decoders: []config.Decoder{{Name: "uint"}}}, kubeLabel("pod")},
			`label "pod": label "namespace" appears twice`},
		{"no uint", []config.Label{{Name: "pod", Size: 8, Decoders: []config.Decoder{{Name: "kubernetes"}}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLabels(tc.labels, env)
			if tc.err == "" {
				// Built, but raw bytes are not a decimal id.
				if err != nil {
					t.Fatal(err)
				}
				if _, err := l.Decode(u64(10)); err == nil || !strings.Contains(err.Error(), `labels namespace, pod, container: "\n`) {
					t.Errorf("decode error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.err {
				t.Errorf("error %v, want %s", err, tc.err)
			}
		})
	}
	if _, err := New(config.Decoder{Name: "kubernetes"}, &Env{Cgroups: mapCgroups{}}); err == nil {
		t.Error("built without a pod resolver")
	}
}

// TestKubernetesCgroupHierarchy lays out a pod's cgroups as the kubelet
// and containerd (systemd driver) or any runtime (cgroupfs driver) do,
// under a scratch cgroup of the real cgroup2 hierarchy, moves a process
// into the container's cgroup, and decodes the id the kernel gives that
// cgroup (its file handle, as bpf_get_current_cgroup_id returns it).
func TestKubernetesCgroupHierarchy(t *testing.T) {
	mount, err := cgroupfs.Mount("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no cgroup2 hierarchy: %v", err)
	}
	base := filepath.Join(mount, "probe-kube-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Skipf("creating a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(base) })
	env := &Env{Cgroups: NewCgroupPaths(mount), Pods: kubepods.New(context.Background(), kubepods.Options{})}
	labels, err := NewLabels([]config.Label{kubeLabel("pod")}, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dirs []string
	}{
		{"systemd driver", []string{"kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod" + strings.ReplaceAll(kubeUID, "-", "_") + ".slice", "cri-containerd-" + kubeCID + ".scope"}},
		{"systemd driver guaranteed crio", []string{"kubepods.slice", "kubepods-pod" + strings.ReplaceAll(kubeUID, "-", "_") + ".slice", "crio-" + kubeCID + ".scope"}},
		{"cgroupfs driver", []string{"kubepods", "besteffort", "pod" + kubeUID, kubeCID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := base
			for _, d := range tc.dirs {
				dir = filepath.Join(dir, d)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				made := dir
				t.Cleanup(func() {
					if err := os.Remove(made); err != nil {
						t.Errorf("removing cgroup: %v", err)
					}
				})
			}
			helper := exec.Command("sleep", "600")
			if err := helper.Start(); err != nil {
				t.Fatal(err)
			}
			// Registered after the directories: runs before their removal.
			t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
			pid := strconv.Itoa(helper.Process.Pid)
			if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(pid), 0o644); err != nil {
				t.Fatal(err)
			}
			self, err := os.ReadFile("/proc/" + pid + "/cgroup")
			if err != nil {
				t.Fatal(err)
			}
			rel := strings.TrimPrefix(dir, mount)
			if !bytes.Contains(self, []byte("0::"+rel+"\n")) {
				t.Fatalf("helper not in %s:\n%s", rel, self)
			}
			id := cgroupID(t, dir)
			got, err := labels.Decode(u64(id))
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"", kubeUID, kubeCID}; !slices.Equal(got, want) {
				t.Errorf("cgroup %d (%s): %q, want %q", id, rel, got, want)
			}
		})
	}
}

// TestKubernetesCgroupGone: a pod's cgroup removed after its id was
// resolved drops the label set, though the resolver still caches its
// path.
func TestKubernetesCgroupGone(t *testing.T) {
	mount, err := cgroupfs.Mount("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no cgroup2 hierarchy: %v", err)
	}
	base := filepath.Join(mount, "probe-kube-gone-"+strconv.Itoa(os.Getpid()))
	dirs := []string{base, filepath.Join(base, "kubepods"), filepath.Join(base, "kubepods", "pod"+kubeUID), filepath.Join(base, "kubepods", "pod"+kubeUID, kubeCID)}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Skipf("creating a cgroup: %v", err)
		}
	}
	defer func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}()
	env := &Env{Cgroups: NewCgroupPaths(mount), Pods: kubepods.New(context.Background(), kubepods.Options{})}
	labels, err := NewLabels([]config.Label{kubeLabel("pod")}, env)
	if err != nil {
		t.Fatal(err)
	}
	leaf := dirs[len(dirs)-1]
	id := cgroupID(t, leaf)
	if got, err := labels.Decode(u64(id)); err != nil || !slices.Equal(got, []string{"", kubeUID, kubeCID}) {
		t.Fatalf("%q, %v", got, err)
	}
	if err := os.Remove(leaf); err != nil {
		t.Fatal(err)
	}
	if got, err := labels.Decode(u64(id)); !errors.Is(err, ErrSkipLabelSet) {
		t.Fatalf("removed cgroup: %q, %v; want the label set dropped", got, err)
	}
}

// cgroupID is the kernel's id of a cgroup2 directory: its file handle
// (kernfs gives the 64-bit node id), which the inode number equals on
// 64-bit hosts.
func cgroupID(t *testing.T, dir string) uint64 {
	t.Helper()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", dir, err)
	}
	b := h.Bytes()
	if len(b) != 8 {
		t.Fatalf("file handle of %s is %d bytes", dir, len(b))
	}
	id := binary.NativeEndian.Uint64(b)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Ino != id {
		t.Fatalf("cgroup %s: handle id %d, inode %d", dir, id, st.Ino)
	}
	return id
}

// BenchmarkKubernetes: decoding one key of a named pod's container (the
// collector does it once per key, and again when names change).
func BenchmarkKubernetes(b *testing.B) {
	env := &Env{
		Cgroups: mapCgroups{10: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(kubeUID, "-", "_") + ".slice/cri-containerd-" + kubeCID + ".scope"},
		Pods:    &namedPods{gen: 1},
	}
	labels, err := NewLabels([]config.Label{kubeLabel("pod")}, env)
	if err != nil {
		b.Fatal(err)
	}
	key := u64(10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := labels.Decode(key); err != nil {
			b.Fatal(err)
		}
	}
}
