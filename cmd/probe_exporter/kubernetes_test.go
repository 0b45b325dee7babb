package main

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// kubeAPI is the part of a Kubernetes API server the exporter uses: the
// pods of one node, listed, then watched. The first request is refused
// (401, as with a token not yet valid); a pod added later reaches the
// open watches.
type kubeAPI struct {
	t     *testing.T
	token string

	mu      sync.Mutex
	refused bool
	rv      int
	pods    []map[string]any
	added   chan struct{} // closed when a pod is added
}

func kubePod(uid, ns, name, rv, container, cid string) map[string]any {
	return map[string]any{
		"kind":     "Pod",
		"metadata": map[string]any{"uid": uid, "namespace": ns, "name": name, "resourceVersion": rv},
		"spec":     map[string]any{"nodeName": "node-a"},
		"status": map[string]any{"containerStatuses": []any{
			map[string]any{"name": container, "containerID": "containerd://" + cid},
		}},
	}
}

func (a *kubeAPI) add(uid, ns, name, container, cid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rv++
	a.pods = append(a.pods, kubePod(uid, ns, name, strconv.Itoa(a.rv), container, cid))
	close(a.added)
	a.added = make(chan struct{})
}

func (a *kubeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.URL.Path != "/api/v1/pods" || q.Get("fieldSelector") != "spec.nodeName=node-a" {
		a.t.Errorf("unexpected request %s", r.URL)
		http.NotFound(w, r)
		return
	}
	a.mu.Lock()
	if !a.refused || r.Header.Get("Authorization") != "Bearer "+a.token {
		a.refused = true
		a.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"kind":"Status","code":401,"message":"Unauthorized"}`)
		return
	}
	if q.Get("watch") != "true" {
		list := map[string]any{"kind": "PodList", "metadata": map[string]any{"resourceVersion": strconv.Itoa(a.rv)}, "items": a.pods}
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(list)
		return
	}
	from, _ := strconv.Atoi(q.Get("resourceVersion"))
	a.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	for {
		a.mu.Lock()
		for _, p := range a.pods {
			rv, _ := strconv.Atoi(p["metadata"].(map[string]any)["resourceVersion"].(string))
			if rv > from {
				_ = json.NewEncoder(w).Encode(map[string]any{"type": "ADDED", "object": p})
				from = rv
			}
		}
		added := a.added
		a.mu.Unlock()
		w.(http.Flusher).Flush()
		select {
		case <-added:
		case <-r.Context().Done():
			return
		}
	}
}

// TestKubernetesLabels runs examples/kube-syscalls with a fake API server
// over TLS, reached as a pod reaches its API server (service account
// token and CA in files): getppid calls of helpers placed in the cgroups a
// kubelet makes for pods (systemd and cgroupfs drivers) are counted under
// the pods' namespace, pod and container names, under the UID and
// container id for a pod the API server does not know, and under no pod
// for a host process. A pod the watch adds later gets its names on the
// series counted before.
func TestKubernetesLabels(t *testing.T) {
	testkit.RequireTools(t, "clang")
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", "-C", examples, "kube-syscalls.bpf.o").CombinedOutput(); err != nil {
		t.Fatalf("make -C examples: %v\n%s", err, out)
	}
	const (
		uidA = "0b2c4d6e-8a1b-4c3d-9e5f-a7b8c9d0e1f2" // known from the list
		uidB = "66666666-7777-4888-9999-aaaaaaaaaaaa" // added by the watch
		uidC = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff" // never known
	)
	cidA, cidB, cidC := strings.Repeat("a1", 32), strings.Repeat("b2", 32), strings.Repeat("c3", 32)
	_, base := testCgroup(t, "probe-kube")
	leaf := func(dirs ...string) string {
		dir := base
		for _, d := range dirs {
			dir = filepath.Join(dir, d)
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
			made := dir
			t.Cleanup(func() { _ = os.Remove(made) })
		}
		return dir
	}
	us := func(uid string) string { return strings.ReplaceAll(uid, "-", "_") }
	cgA := leaf("kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod"+us(uidA)+".slice", "cri-containerd-"+cidA+".scope")
	cgB := leaf("kubepods.slice", "kubepods-besteffort.slice", "kubepods-besteffort-pod"+us(uidB)+".slice", "crio-"+cidB+".scope")
	cgC := leaf("kubepods", "pod"+uidC, cidC)

	api := &kubeAPI{t: t, token: "e2e-token", rv: 10, added: make(chan struct{})}
	api.add(uidA, "shop", "web-0", "nginx", cidA)
	srv := httptest.NewTLSServer(api)
	// Closed after the exporter stops (cleanups run last first): its
	// watch is open until then.
	t.Cleanup(srv.Close)
	sa := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for name, data := range map[string][]byte{"token": []byte(api.token), "ca.crt": ca, "namespace": []byte("probe-exporter")} {
		if err := os.WriteFile(filepath.Join(sa, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := exporter(t, "--config.dir="+examples, "--config.names=kube-syscalls", "--config.strict",
		"--kubernetes.api-server="+srv.URL, "--kubernetes.service-account-dir="+sa, "--kubernetes.node-name=node-a")

	const metric = `probe_exporter_pod_syscalls_total{`
	getppid := func(labels string) string { return metric + labels + `,syscall="getppid"}` }
	workloadIn(t, cgA, "kube_a", 111)
	workloadIn(t, cgB, "kube_b", 222)
	workloadIn(t, cgC, "kube_c", 333)
	kubeWaitSeries(t, addr, getppid(`container="nginx",namespace="shop",pod="web-0"`)+" 111")
	kubeWaitSeries(t, addr, getppid(`container="`+cidB+`",namespace="",pod="`+uidB+`"`)+" 222")
	kubeWaitSeries(t, addr, getppid(`container="`+cidC+`",namespace="",pod="`+uidC+`"`)+" 333")
	kubeWaitSeries(t, addr, `probe_exporter_kubernetes_api_errors_total{request="list"} 1`)
	kubeWaitSeries(t, addr, `probe_exporter_kubernetes_pods 1`)

	// Pod B becomes known: its series, counted before, take its names.
	api.add(uidB, "batch", "job-x7", "worker", cidB)
	kubeWaitSeries(t, addr, getppid(`container="worker",namespace="batch",pod="job-x7"`)+" 222")
	kubeWaitSeries(t, addr, `probe_exporter_kubernetes_pods 2`)
	workloadIn(t, cgB, "kube_b", 8)
	kubeWaitSeries(t, addr, getppid(`container="worker",namespace="batch",pod="job-x7"`)+" 230")
	for _, l := range series(t, addr, metric) {
		if strings.Contains(l, uidB) {
			t.Errorf("pod B still under its UID: %s", l)
		}
	}
	// Host processes: empty labels (which Prometheus takes as absent).
	workload(t, "kube_host", 5)
	host := getppid(`container="",namespace="",pod=""`)
	var l []string
	if !testkit.Poll(90*time.Second, func() bool {
		l = series(t, addr, host)
		if len(l) != 1 {
			return false
		}
		n, err := strconv.Atoi(strings.TrimPrefix(l[0], host+" "))
		return err == nil && n >= 5
	}) {
		t.Errorf("host getppid calls: %q", l)
	}
	if got := series(t, addr, getppid(`container="nginx",namespace="shop",pod="web-0"`)); len(got) != 1 || got[0] != getppid(`container="nginx",namespace="shop",pod="web-0"`)+" 111" {
		t.Errorf("pod A: %q", got)
	}
}

// kubeWaitSeries polls /metrics for an exact line.
func kubeWaitSeries(t *testing.T, addr, want string) {
	t.Helper()
	prefix, _, _ := strings.Cut(want, " ")
	var lines []string
	if !testkit.Poll(90*time.Second, func() bool {
		lines = series(t, addr, prefix)
		return hasLine(lines, want)
	}) {
		t.Fatalf("waiting for %q; have:\n%s", want, strings.Join(lines, "\n"))
	}
}
