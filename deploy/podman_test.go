package deploy

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// TestPodmanImage builds the minimal image with `make image`'s script and
// runs it with podman as the DaemonSet's container: its capabilities
// (--cap-drop=all, --cap-add), hostPID, a read-only root, its host mounts
// read-only where it says so, no_new_privs, seccomp unconfined. The image
// answers --version, under ebpf_exporter's name too, and serves the
// embedded defaults. On this project's
// machines podman needs runc with cgroupfs (crun refuses cgroups in hybrid
// mode) and ulimits no higher than root's own (root lacks
// CAP_SYS_RESOURCE); the host network stands in for the pod's.
func TestPodmanImage(t *testing.T) {
	testkit.RequireRoot(t)
	for _, tool := range []string{"podman", "buildah", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make image installs podman and buildah; runc is Debian's runc)", tool)
		}
	}
	ds, err := DaemonSet("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ContainerOf(ds)
	if err != nil {
		t.Fatal(err)
	}
	const image = "localhost/probe_exporter-deploy-test"
	build := exec.Command("container/build.sh", "minimal")
	build.Env = append(os.Environ(), "IMAGE="+image, "VERSION=test", "OUT="+t.TempDir())
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("container/build.sh minimal: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image+":test", image+":latest").Run() })

	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	nofile := strconv.FormatUint(min(lim.Cur, 1024), 10)
	run := []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm",
		"--ulimit", "nofile=" + nofile + ":" + nofile, "--ulimit", "nproc=1000:1000"}

	out, err := exec.Command("podman", append(run, image+":test", "--version")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "probe_exporter, version test") {
		t.Fatalf("podman run %s --version: %v\n%s", image, err, out)
	}
	// A DaemonSet written for ebpf_exporter names its command: the
	// binary runs under that name (found on PATH, or /ebpf_exporter).
	for _, cmd := range []string{"ebpf_exporter", "/ebpf_exporter"} {
		out, err := exec.Command("podman", append(run, "--entrypoint", cmd, image+":test", "--version")...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ebpf_exporter, version test") {
			t.Errorf("podman run --entrypoint %s %s --version: %v\n%s", cmd, image, err, out)
		}
	}
	inspect, _ := exec.Command("podman", "image", "inspect", image+":test", "--format", "{{json .Annotations}} {{json .Labels}}").Output()
	for _, k := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.source", "org.opencontainers.image.created"} {
		if strings.Count(string(inspect), `"`+k+`"`) != 2 {
			t.Errorf("image lacks annotation and label %s: %s", k, inspect)
		}
	}

	if !c.HostPID || !c.ReadOnlyRoot {
		t.Fatalf("the manifest lacks hostPID or readOnlyRootFilesystem")
	}
	name := "probe-exporter-deploy-test-" + strconv.Itoa(os.Getpid())
	args := append(run, "--name", name, "--network", "host", "--pid", "host", "--read-only", "--cap-drop", "all",
		"--security-opt", "seccomp=unconfined")
	if c.NoNewPrivs {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	for _, cp := range c.Caps {
		args = append(args, "--cap-add", cp)
	}
	for _, m := range c.Mounts {
		switch {
		case m.HostPath != "":
			v := m.HostPath + ":" + m.Path + ":rbind"
			if m.ReadOnly {
				v += ",ro"
			}
			args = append(args, "-v", v)
		case m.EmptyDir:
			args = append(args, "--tmpfs", m.Path)
		case m.ConfigMap != "":
			v := configMap(t, os.FileMode(m.Mode), nil) + ":" + m.Path
			if m.ReadOnly {
				v += ":ro"
			}
			args = append(args, "-v", v)
		}
	}
	addr := testkit.FreePort(t)
	args = append(args, image+":test")
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--web.listen-address=") {
			a = "--web.listen-address=" + addr
		}
		args = append(args, a)
	}
	cmd := exec.Command("podman", args...)
	log := &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		exec.Command("podman", "--runtime", "runc", "stop", "-t", "20", name).Run()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("podman %s\n%s", strings.Join(args, " "), testkit.Tail(log.String(), 40))
		}
	})
	p := &pod{cmd: cmd, addr: addr, log: log, done: done}
	deadline := time.Now().Add(120 * time.Second)
	for {
		if code, _, _ := testkit.TryGet("http://" + addr + "/-/ready"); code == 200 {
			break
		}
		select {
		case <-done:
			t.Fatalf("the container exited:\n%s", testkit.Tail(log.String(), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not get ready:\n%s", testkit.Tail(log.String(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.metric(t, `probe_exporter_syscalls_total\{syscall="read"\}`, func(v float64) bool { return v > 0 })
	pidOut, err := exec.Command("podman", "inspect", "--format", "{{.State.Pid}}", name).Output()
	pid, perr := strconv.Atoi(strings.TrimSpace(string(pidOut)))
	if err != nil || perr != nil {
		t.Fatalf("podman inspect %s: %v %v", name, err, perr)
	}
	p.cmd = &exec.Cmd{Process: &os.Process{Pid: pid}}
	held := statusCaps(t, os.Getpid(), "CapBnd")
	if got, want := p.waitDropped(t), capMask("CAP_BPF", "CAP_PERFMON", "CAP_SYS_RESOURCE")&held; got != want {
		t.Errorf("kept %v, want %v", capList(got), capList(want))
	}
	if got, want := statusCaps(t, pid, "CapBnd"), capMask(c.Caps...)&held; got != want {
		t.Errorf("the container's bounding set %v, want the manifest's %v", capList(got), capList(want))
	}
}
