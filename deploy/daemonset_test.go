package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// capNames are Linux's capabilities by number (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

func capMask(names ...string) uint64 {
	var m uint64
	for _, n := range names {
		for i, c := range capNames {
			if c == n {
				m |= 1 << i
			}
		}
	}
	return m
}

func capList(m uint64) []string {
	var out []string
	for i, c := range capNames {
		if m&(1<<i) != 0 {
			out = append(out, c)
		}
	}
	return out
}

// statusCaps reads a CapXxx: field of /proc/PID/status.
func statusCaps(t *testing.T, pid int, field string) uint64 {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			m, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return m
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// rootfsMinimal is the minimal image's root file system: the build context
// of its Containerfile stage (`COPY rootfs/ /`), laid out afresh by the
// same script `make image` runs, with the binary `make build` makes.
func rootfsMinimal(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("container/build.sh", "rootfs")
	cmd.Env = append(os.Environ(), "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("container/build.sh rootfs: %v\n%s", err, b)
	}
	return filepath.Join(out, "rootfs")
}

// rootfsFull is the full image's root file system: the Debian base
// `make image-full` imports, under the binary `make build` makes (the
// full stage adds nothing else but the links to it). Empty when that base was never built.
func rootfsFull(t *testing.T, minimal string) (lower string) {
	t.Helper()
	const base = "localhost/probe_exporter-base:bookworm"
	podman, err := exec.LookPath("podman")
	if err != nil || exec.Command(podman, "image", "exists", base).Run() != nil {
		return ""
	}
	out, err := exec.Command(podman, "image", "mount", base).Output()
	if err != nil {
		t.Fatalf("podman image mount %s: %v", base, err)
	}
	t.Cleanup(func() { exec.Command(podman, "image", "unmount", base).Run() })
	bin := t.TempDir()
	os.MkdirAll(filepath.Join(bin, "usr/bin"), 0o755)
	data, err := os.ReadFile(filepath.Join(minimal, "usr/bin/probe_exporter"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bin, "usr/bin/probe_exporter"), data, 0o755)
	// The links the full stage copies with it (COPY rootfs/usr/bin/,
	// rootfs/ebpf_exporter).
	for _, l := range []string{"usr/bin/ebpf_exporter", "ebpf_exporter"} {
		target, err := os.Readlink(filepath.Join(minimal, l))
		if err != nil {
			t.Fatal(err)
		}
		os.Symlink(target, filepath.Join(bin, l))
	}
	// Mount points the minimal image has and Debian lacks.
	for _, d := range []string{"etc/probe_exporter/configs", "etc/probe_exporter/scripts"} {
		os.MkdirAll(filepath.Join(bin, d), 0o755)
	}
	return bin + ":" + strings.TrimSpace(string(out))
}

// configMap lays files out as the kubelet mounts a ConfigMap: each name a
// symlink into ..data, itself a symlink to a timestamped directory.
func configMap(t *testing.T, mode os.FileMode, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	ts := "..2026_01_01_00_00_00.000000001"
	os.Mkdir(filepath.Join(dir, ts), 0o755)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, name), data, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, ts, name), mode)
		os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name))
	}
	os.Symlink(ts, filepath.Join(dir, "..data"))
	return dir
}

// pod is the exporter running as the DaemonSet's container.
type pod struct {
	cmd  *exec.Cmd
	addr string
	log  *testkit.LogBuffer
	done chan struct{}
}

// runPod starts the image's entrypoint as the manifest's container would
// run: in its own mount namespace, the root file system read-only when
// readOnlyRootFilesystem says so, /proc of the host's pid namespace
// (hostPID), a read-only sysfs and a /dev with the usual devices as
// runtimes give them, every volumeMount of the manifest with its
// readOnly, then chroot and exactly the added capabilities (the bounding
// set holds nothing else, so root's exec gets only those), with
// no_new_privs when allowPrivilegeEscalation is false. configMaps maps a
// ConfigMap's name to the directory standing in for it. args follow the
// manifest's, whose listen address is replaced by a free local port. The
// container's command, when it has one, replaces the image's entrypoint
// /usr/bin/probe_exporter; a command without a slash is looked up in the
// root file system's PATH, as runtimes do.
func runPod(t *testing.T, c Container, rootfs string, configMaps map[string]string, args ...string) *pod {
	t.Helper()
	return runPodAt(t, c, rootfs, testkit.FreePort(t), configMaps, args...)
}

// runPodAt is runPod waiting on addr, which replaces the manifest's
// listen address if it has one: without one, addr is where the exporter's
// default is expected.
func runPodAt(t *testing.T, c Container, rootfs, addr string, configMaps map[string]string, args ...string) *pod {
	t.Helper()
	for _, tool := range []string{"unshare", "capsh", "setpriv", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is needed (util-linux, libcap2-bin)", tool)
		}
	}
	if c.Privileged {
		t.Fatal("the manifest asks for a privileged container")
	}
	if c.RunAsUser != 0 {
		t.Fatalf("runAsUser %d: the exporter starts as root", c.RunAsUser)
	}
	if !c.HostPID {
		t.Fatal("the manifest lacks hostPID: host processes would not be seen")
	}
	entry := "/usr/bin/probe_exporter"
	var full []string
	if len(c.Command) > 0 {
		entry = c.Command[0]
		if !strings.Contains(entry, "/") {
			entry = lookPathIn(t, rootfs, entry)
		}
		full = append(full, c.Command[1:]...)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--web.listen-address=") {
			a = "--web.listen-address=" + addr
		}
		full = append(full, a)
	}
	full = append(full, args...)

	root := t.TempDir()
	var sh strings.Builder
	fmt.Fprintf(&sh, "set -e\nR=%s\n", quote(root))
	if host, ok := strings.CutPrefix(rootfs, "host:"); ok {
		// A service on the host: its file system, no chroot.
		sh.WriteString("exec ")
		if c.NoNewPrivs {
			sh.WriteString("setpriv --no-new-privs ")
		}
		fmt.Fprintf(&sh, "capsh --drop=%s --shell=%s --", strings.Join(dropList(c.Caps), ","), quote(host))
	} else {
		containerMounts(t, &sh, c, rootfs, configMaps)
		sh.WriteString("exec ")
		if c.NoNewPrivs {
			sh.WriteString("setpriv --no-new-privs ")
		}
		fmt.Fprintf(&sh, "capsh --chroot=\"$R\" --drop=%s --shell=%s --", strings.Join(dropList(c.Caps), ","), quote(entry))
	}
	for _, a := range full {
		sh.WriteString(" " + quote(a))
	}
	sh.WriteString("\n")

	p := &pod{addr: addr, log: &testkit.LogBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("unshare", "--mount", "--propagation=private", "sh", "-c", sh.String())
	p.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=probe-exporter"}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("exporter did not stop within 30 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("launch script:\n%s\nexporter log:\n%s", sh.String(), testkit.Tail(p.log.String(), 60))
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		// Healthy: serving (ready needs a config that is up).
		if code, _, _ := testkit.TryGet("http://" + addr + "/-/healthy"); code == 200 {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("the container exited before serving:\n%s\n%s", sh.String(), testkit.Tail(p.log.String(), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not get ready:\n%s", testkit.Tail(p.log.String(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lookPathIn finds a command in the image's PATH (runtimes' default, the
// images set none) as the container would: within its root file system.
func lookPathIn(t *testing.T, rootfs, name string) string {
	t.Helper()
	var roots []string
	if lower, ok := strings.CutPrefix(rootfs, "overlay:"); ok {
		roots = strings.Split(lower, ":")
	} else {
		roots = []string{rootfs}
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		for _, r := range roots {
			if _, err := os.Lstat(filepath.Join(r, dir, name)); err == nil {
				return dir + "/" + name
			}
		}
	}
	t.Fatalf("%s: not found in the image's PATH", name)
	return ""
}

// containerMounts writes the mounts a runtime makes for the container
// under $R: the root file system, /proc, /sys, /dev, the volumeMounts.
func containerMounts(t *testing.T, sh *strings.Builder, c Container, rootfs string, configMaps map[string]string) {
	t.Helper()
	if lower, ok := strings.CutPrefix(rootfs, "overlay:"); ok {
		fmt.Fprintf(sh, "mount -t overlay overlay -o ro,lowerdir=%s \"$R\"\n", quote(lower))
	} else {
		fmt.Fprintf(sh, "mount --bind %s \"$R\"\n", quote(rootfs))
		if c.ReadOnlyRoot {
			sh.WriteString("mount -o remount,bind,ro \"$R\"\n")
		}
	}
	sh.WriteString("mount -t proc -o nosuid,nodev,noexec proc \"$R/proc\"\n")
	sh.WriteString("mount -t sysfs -o ro,nosuid,nodev,noexec sysfs \"$R/sys\"\n")
	sh.WriteString("mount -t tmpfs -o nosuid,mode=755 tmpfs \"$R/dev\"\n")
	sh.WriteString("for d in null zero full random urandom; do touch \"$R/dev/$d\"; mount --bind /dev/$d \"$R/dev/$d\"; done\n")
	for _, m := range c.Mounts {
		target := "\"$R\"" + quote(m.Path)
		switch {
		case m.HostPath != "":
			// Kubernetes binds hostPaths recursively; readOnly makes the
			// top mount read-only (recursiveReadOnly is not set).
			fmt.Fprintf(sh, "mount --rbind %s %s\n", quote(m.HostPath), target)
		case m.EmptyDir:
			fmt.Fprintf(sh, "mount -t tmpfs -o nosuid,nodev tmpfs %s\n", target)
		case m.ConfigMap != "":
			dir, ok := configMaps[m.ConfigMap]
			if !ok {
				dir = configMap(t, os.FileMode(m.Mode), nil) // optional and absent: empty
			}
			fmt.Fprintf(sh, "mount --bind %s %s\n", quote(dir), target)
		}
		if m.ReadOnly {
			fmt.Fprintf(sh, "mount -o remount,bind,ro %s\n", target)
		}
	}
}

// dropList names every capability but those kept, for capsh --drop.
func dropList(kept []string) []string {
	keep := capMask(kept...)
	var drop []string
	for i, n := range capNames {
		if keep&(1<<i) == 0 {
			drop = append(drop, strings.ToLower(n))
		}
	}
	return drop
}

// waitDropped waits until the exporter has dropped what it does not keep
// and returns what it kept: its permitted set, which its effective set
// equals. Without CAP_SETPCAP (the manifest does not add it) the bounding
// set stays the container's, and no_new_privs keeps started programs from
// regaining any of it.
func (p *pod) waitDropped(t *testing.T) uint64 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.log.String(), "capabilities dropped") && !strings.Contains(p.log.String(), "capabilities kept: all") {
		if time.Now().After(deadline) {
			t.Fatalf("no capability drop logged:\n%s", testkit.Tail(p.log.String(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid := p.cmd.Process.Pid
	prm, eff := statusCaps(t, pid, "CapPrm"), statusCaps(t, pid, "CapEff")
	if prm != eff {
		t.Errorf("permitted %v, effective %v", capList(prm), capList(eff))
	}
	if inh := statusCaps(t, pid, "CapInh"); inh&^prm != 0 {
		t.Errorf("inheritable %v beyond permitted", capList(inh))
	}
	status := readStatus(t, pid)
	if bnd := statusCaps(t, pid, "CapBnd"); bnd != prm && !strings.Contains(status, "NoNewPrivs:\t1") {
		t.Errorf("bounding set %v beyond the kept %v without no_new_privs", capList(bnd), capList(prm))
	}
	return prm
}

// metric waits for a series matching re and returns its value.
func (p *pod) metric(t *testing.T, re string, want func(float64) bool) float64 {
	t.Helper()
	rx := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`)
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		_, body, _ := testkit.TryGet("http://" + p.addr + "/metrics")
		if m := rx.FindStringSubmatch(body); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			if want(v) {
				return v
			}
			last = m[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no series %s as wanted (last: %q)", re, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDaemonSetSecurityContext runs the image's root file system with
// exactly what deploy/kubernetes/daemonset.yaml grants: the embedded
// defaults serve, a userspace probe counts a host process's calls exactly,
// the scripts of the ConfigMap run, and the exporter keeps only what the
// features it was started with need.
func TestDaemonSetSecurityContext(t *testing.T) {
	testkit.RequireRoot(t)
	ds, err := DaemonSet("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ContainerOf(ds)
	if err != nil {
		t.Fatal(err)
	}
	granted := capMask(c.Caps...)
	if len(capList(granted)) != len(c.Caps) {
		t.Fatalf("unknown capability among %v", c.Caps)
	}
	held := statusCaps(t, os.Getpid(), "CapBnd")
	t.Logf("manifest grants %v; of those this machine's root lacks %v", c.Caps, capList(granted&^held))
	granted &= held

	minimal := rootfsMinimal(t)
	target := testkit.BuildWorker(t, "probe_target")
	hello := buildHello(t)
	images := []struct {
		name, rootfs string
		bpftrace     bool
	}{{name: "minimal", rootfs: minimal}}
	if lower := rootfsFull(t, minimal); lower != "" {
		images = append(images, struct {
			name, rootfs string
			bpftrace     bool
		}{"full", "overlay:" + lower, true})
	} else {
		t.Log("the full image's base is not built (make image-full): only the minimal image is run")
	}
	base := capMask("CAP_BPF", "CAP_PERFMON", "CAP_SYS_RESOURCE")
	bpftrace := base | capMask("CAP_SYSLOG", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN")
	uprobes := bpftrace | capMask("CAP_KILL")
	for _, img := range images {
		t.Run(img.name, func(t *testing.T) {
			t.Run("holds exactly the manifest's capabilities", func(t *testing.T) {
				p := runPod(t, c, img.rootfs, nil, "--capabilities.keep=all")
				p.waitDropped(t)
				for _, f := range []string{"CapBnd", "CapPrm", "CapEff"} {
					if got := statusCaps(t, p.cmd.Process.Pid, f); got != granted {
						t.Errorf("%s %v, want the manifest's %v", f, capList(got), capList(granted))
					}
				}
				if got := statusCaps(t, p.cmd.Process.Pid, "CapAmb"); got != 0 {
					t.Errorf("ambient %v", capList(got))
				}
				if c.NoNewPrivs && !strings.Contains(readStatus(t, p.cmd.Process.Pid), "NoNewPrivs:\t1") {
					t.Error("no_new_privs is not set")
				}
			})
			t.Run("embedded defaults", func(t *testing.T) {
				p := runPod(t, c, img.rootfs, nil)
				if got, want := p.waitDropped(t), base&granted; got != want {
					t.Errorf("kept %v, want %v", capList(got), capList(want))
				}
				p.metric(t, `probe_exporter_syscalls_total\{syscall="read"\}`, func(v float64) bool { return v > 0 })
				p.metric(t, `probe_exporter_config_up\{config="syscalls"\}`, func(v float64) bool { return v == 1 })
				if code, _, body := testkit.Get(t, "http://"+p.addr+"/-/ready"); code != 200 {
					t.Errorf("/-/ready: %d %s", code, body)
				}
			})
			t.Run("command of a DaemonSet written for ebpf_exporter", func(t *testing.T) {
				// ebpf_exporter found on PATH, and /ebpf_exporter where
				// ebpf_exporter's own image has it: the binary runs under
				// that name, with ebpf_exporter's names.
				for _, cmd := range []string{"ebpf_exporter", "/ebpf_exporter"} {
					t.Run(cmd, func(t *testing.T) {
						e := c
						e.Command = []string{cmd}
						p := runPod(t, e, img.rootfs, nil)
						if got, want := p.waitDropped(t), base&granted; got != want {
							t.Errorf("kept %v, want %v", capList(got), capList(want))
						}
						p.metric(t, `ebpf_exporter_syscalls_total\{syscall="read"\}`, func(v float64) bool { return v > 0 })
						p.metric(t, `ebpf_exporter_enabled_configs\{name="syscalls"\}`, func(v float64) bool { return v == 1 })
						if _, body, _ := testkit.TryGet("http://" + p.addr + "/metrics"); strings.Contains(body, "\nprobe_exporter_syscalls_total") {
							t.Errorf("probe_exporter's names are served under ebpf_exporter's")
						}
					})
				}
			})
			t.Run("userspace probe on a host process", func(t *testing.T) {
				// The host process runs first; the probe names its file as
				// that process sees it, through /proc/PID/root (hostPID
				// makes PID the host's).
				h := testkit.StartWorker(t, target)
				object := buildProbe(t, fmt.Sprintf("/proc/%d/root%s", h.Pid(), target))
				configs := configMap(t, 0o644, map[string][]byte{"demo.yaml": []byte(demoConfig), "demo.bpf.o": object})
				p := runPod(t, c, img.rootfs, map[string]string{"probe-exporter-configs": configs},
					"--config.dir=/etc/probe_exporter/configs")
				if got, want := p.waitDropped(t), uprobes&granted; got != want {
					t.Errorf("kept %v, want %v", capList(got), capList(want))
				}
				p.metric(t, `probe_exporter_config_up\{config="demo"\}`, func(v float64) bool { return v == 1 })
				const calls = 1234
				h.Call(t, calls)
				p.metric(t, fmt.Sprintf(`probe_exporter_demo_calls\{pid="%d"\}`, h.Pid()), func(v float64) bool { return v == calls })
				h.Call(t, calls)
				p.metric(t, fmt.Sprintf(`probe_exporter_demo_calls\{pid="%d"\}`, h.Pid()), func(v float64) bool { return v == 2*calls })
			})
			t.Run("without SYS_ADMIN the uprobe cannot work", func(t *testing.T) {
				// The manifest's SYS_ADMIN is needed, not only enough.
				h := testkit.StartWorker(t, target)
				object := buildProbe(t, fmt.Sprintf("/proc/%d/root%s", h.Pid(), target))
				configs := configMap(t, 0o644, map[string][]byte{"demo.yaml": []byte(demoConfig), "demo.bpf.o": object})
				less := c
				less.Caps = nil
				for _, n := range c.Caps {
					if n != "CAP_SYS_ADMIN" {
						less.Caps = append(less.Caps, n)
					}
				}
				p := runPod(t, less, img.rootfs, map[string]string{"probe-exporter-configs": configs},
					"--config.dir=/etc/probe_exporter/configs")
				p.waitDropped(t)
				if log := p.log.String(); !strings.Contains(log, `feature cannot work: capability not kept" feature=uprobes missing=CAP_SYS_ADMIN`) {
					t.Errorf("the exporter does not say uprobes need CAP_SYS_ADMIN:\n%s", testkit.Tail(log, 20))
				}
				p.metric(t, `probe_exporter_config_up\{config="demo"\}`, func(v float64) bool { return v == 0 })
				// Its only config is down: the pod is not ready.
				if code, _, body := testkit.Get(t, "http://"+p.addr+"/-/ready"); code != 503 || !strings.Contains(body, "demo") {
					t.Errorf("/-/ready: %d %s, want 503 naming demo", code, body)
				}
			})
			t.Run("scripts", func(t *testing.T) {
				scripts := configMap(t, 0o755, map[string][]byte{
					"hello":   hello,
					"wake.bt": []byte("tracepoint:sched:sched_wakeup { @wakeups_total[args->pid > 0] = count(); }\n"),
				})
				p := runPod(t, c, img.rootfs, map[string]string{"probe-exporter-scripts": scripts})
				bnd := p.waitDropped(t)
				waitScript(t, p.addr, "hello", func(code int, body string) bool { return code == 200 && strings.Contains(body, "hello 1") })
				if img.bpftrace {
					if want := bpftrace & granted; bnd != want {
						t.Errorf("kept %v, want %v", capList(bnd), capList(want))
					}
					waitScript(t, p.addr, "wake.bt", func(code int, body string) bool {
						return code == 200 && strings.Contains(body, `wakeups_total{key="1"} `)
					})
				} else {
					// No bpftrace in the minimal image: the script is
					// reported by name, with what it needs.
					waitScript(t, p.addr, "wake.bt", func(code int, body string) bool {
						return code >= 500 && strings.Contains(body, "wake.bt needs bpftrace")
					})
				}
			})
		})
	}
}

func readStatus(t *testing.T, pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func waitScript(t *testing.T, addr, name string, ok func(int, string) bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, body, err := testkit.TryGet("http://" + addr + "/" + name)
		if ok(code, body) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/%s: %d %s %v", name, code, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The probe: an ebpf_exporter v2 config whose uprobe names a host file.
const probeC = `#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} demo_calls SEC(".maps");

SEC("uprobe/%s:work")
int on_work(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *v = bpf_map_lookup_elem(&demo_calls, &pid);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&demo_calls, &pid, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

const demoConfig = `metrics:
  counters:
    - name: demo_calls
      help: work() calls of the host process, by host pid
      labels:
        - name: pid
          size: 4
          decoders:
            - name: uint
`

const helloC = `#include <stdio.h>
#include <unistd.h>
int main(void) {
	for (;;) { printf("hello 1\n# EOF\n"); fflush(stdout); sleep(1); }
}
`

// buildProbe compiles the probe of the host file target.
func buildProbe(t *testing.T, target string) []byte {
	t.Helper()
	data, err := os.ReadFile(testkit.CompileBPF(t, fmt.Sprintf(probeC, target), t.TempDir(), "demo"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// buildHello is an executable script for an image without a shell: a
// static binary, small enough for a ConfigMap's binaryData (1 MiB).
func buildHello(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(testkit.BuildC(t, "hello", helloC, "-static", "-Os", "-s"))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 1<<20 {
		t.Fatalf("hello is %d bytes, more than a ConfigMap holds", len(data))
	}
	return data
}

// quote makes s one shell word.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
