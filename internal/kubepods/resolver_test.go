package kubepods

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

const testToken = "test-token-of-the-service-account"

// testClock is a clock the test moves on, read by the resolver's
// goroutine.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// fakeAPI serves /api/v1/pods as the API server does for one node: a list
// with a resourceVersion, and watches streaming the changes after a
// version. Requests may be made to fail, and open watches dropped.
type fakeAPI struct {
	t    *testing.T
	node string

	mu       sync.Mutex
	rv       int
	pods     map[string]any // uid -> pod object (a map)
	log      []fakeEvent    // every change, for watches from a version
	fail     []int          // status codes for the next requests
	watchRVs []string       // resourceVersion of each watch request
	lists    int            // list requests answered
	changed  chan struct{}  // closed and replaced on every change
	drop     chan struct{}  // closed to drop the open watches
}

type fakeEvent struct {
	rv  int
	typ string
	obj any
}

func newFakeAPI(t *testing.T, node string) *fakeAPI {
	return &fakeAPI{t: t, node: node, rv: 100, pods: map[string]any{}, changed: make(chan struct{}), drop: make(chan struct{})}
}

func podJSON(uid, ns, name, rv string, containers map[string]string) map[string]any {
	var statuses []any
	for name, id := range containers {
		statuses = append(statuses, map[string]any{"name": name, "containerID": "containerd://" + id, "ready": true, "image": "x"})
	}
	return map[string]any{
		"kind":     "Pod",
		"metadata": map[string]any{"uid": uid, "namespace": ns, "name": name, "resourceVersion": rv, "labels": map[string]any{"app": name}},
		"spec":     map[string]any{"nodeName": "node-a", "containers": []any{map[string]any{"name": "x"}}},
		"status":   map[string]any{"phase": "Running", "containerStatuses": statuses},
	}
}

// put adds or changes a pod and tells the watches.
func (f *fakeAPI) put(uid, ns, name string, containers map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	typ := "MODIFIED"
	if _, ok := f.pods[uid]; !ok {
		typ = "ADDED"
	}
	p := podJSON(uid, ns, name, strconv.Itoa(f.rv), containers)
	f.pods[uid] = p
	f.log = append(f.log, fakeEvent{f.rv, typ, p})
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeAPI) del(uid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	// The deletion event carries the pod at the deletion's version.
	p := f.pods[uid].(map[string]any)
	meta := map[string]any{}
	for k, v := range p["metadata"].(map[string]any) {
		meta[k] = v
	}
	meta["resourceVersion"] = strconv.Itoa(f.rv)
	delete(f.pods, uid)
	f.log = append(f.log, fakeEvent{f.rv, "DELETED", map[string]any{"kind": "Pod", "metadata": meta}})
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeAPI) failNext(codes ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, codes...)
}

func (f *fakeAPI) dropWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.drop)
	f.drop = make(chan struct{})
}

func (f *fakeAPI) watches() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.watchRVs...)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/pods" {
		http.NotFound(w, r)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		http.Error(w, `{"kind":"Status","code":401,"message":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if got := r.URL.Query().Get("fieldSelector"); got != "spec.nodeName="+f.node {
		f.t.Errorf("fieldSelector %q", got)
	}
	f.mu.Lock()
	if len(f.fail) > 0 {
		code := f.fail[0]
		f.fail = f.fail[1:]
		f.mu.Unlock()
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"kind":"Status","code":%d,"message":"injected failure %d"}`, code, code)
		return
	}
	if r.URL.Query().Get("watch") != "true" {
		items := []any{}
		for _, p := range f.pods {
			items = append(items, p)
		}
		rv := f.rv
		f.lists++
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "PodList", "metadata": map[string]any{"resourceVersion": strconv.Itoa(rv)}, "items": items})
		return
	}
	from, err := strconv.Atoi(r.URL.Query().Get("resourceVersion"))
	if err != nil {
		f.t.Errorf("watch without a resourceVersion: %q", r.URL.RawQuery)
	}
	f.watchRVs = append(f.watchRVs, r.URL.Query().Get("resourceVersion"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	enc := json.NewEncoder(w)
	for {
		f.mu.Lock()
		var todo []fakeEvent
		for _, ev := range f.log {
			if ev.rv > from {
				todo = append(todo, ev)
			}
		}
		changed, drop := f.changed, f.drop
		f.mu.Unlock()
		for _, ev := range todo {
			_ = enc.Encode(map[string]any{"type": ev.typ, "object": ev.obj})
			from = ev.rv
		}
		w.(http.Flusher).Flush()
		select {
		case <-changed:
		case <-drop:
			// Break the connection in the middle of the chunked
			// stream, as a restarting API server or a load balancer
			// does.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		case <-r.Context().Done():
			return
		}
	}
}

// serviceAccountDir lays out the in-cluster files (token, ca.crt,
// namespace) for the server's certificate.
func serviceAccountDir(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for name, data := range map[string][]byte{"token": []byte(testToken + "\n"), "ca.crt": ca, "namespace": []byte("probe-exporter")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	uidA = "11111111-2222-4333-8444-555555555555"
	uidB = "66666666-7777-4888-9999-aaaaaaaaaaaa"
	uidC = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
)

var (
	cid1 = strings.Repeat("1a", 32)
	cid2 = strings.Repeat("2b", 32)
	cid3 = strings.Repeat("3c", 32)
)

func systemdPath(uid, cid string) string {
	return "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-" + cid + ".scope"
}

type podLabels struct{ ns, pod, container string }

func lookup(r *Resolver, path string) podLabels {
	ns, pod, c, _ := r.Pod(path)
	return podLabels{ns, pod, c}
}

func TestResolverAPI(t *testing.T) {
	api := newFakeAPI(t, "node-a")
	api.put(uidA, "shop", "web-0", map[string]string{"nginx": cid1, "sidecar": cid2})
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	logs := &testkit.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := New(ctx, Options{
		APIServer:         srv.URL,
		ServiceAccountDir: serviceAccountDir(t, srv),
		NodeName:          "node-a",
		MetricsNamespace:  "probe_exporter",
		Logger:            slog.New(slog.NewTextHandler(logs, nil)),
	})
	clock := &testClock{}
	r.now = clock.now
	pathA1, pathA2, pathB := systemdPath(uidA, cid1), systemdPath(uidA, cid2), "/kubepods/besteffort/pod"+uidB+"/"+cid3

	// Before Start nothing is asked: UIDs and ids.
	if got, want := lookup(r, pathA1), (podLabels{"", uidA, cid1}); got != want {
		t.Fatalf("before start: %+v, want %+v", got, want)
	}
	r.Start()
	testkit.Eventually(t, "the listed pod's names", func() bool { return lookup(r, pathA1) == podLabels{"shop", "web-0", "nginx"} })
	if got, want := lookup(r, pathA2), (podLabels{"shop", "web-0", "sidecar"}); got != want {
		t.Errorf("second container: %+v, want %+v", got, want)
	}
	if got, want := lookup(r, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+strings.ReplaceAll(uidA, "-", "_")+".slice"), (podLabels{"shop", "web-0", ""}); got != want {
		t.Errorf("pod cgroup: %+v, want %+v", got, want)
	}
	if _, _, _, ok := r.Pod("/system.slice/ssh.service"); ok {
		t.Error("a host cgroup is a pod's")
	}

	t.Run("watch adds a pod", func(t *testing.T) {
		if got, want := lookup(r, pathB), (podLabels{"", uidB, cid3}); got != want {
			t.Fatalf("unknown pod: %+v, want %+v", got, want)
		}
		gen := r.Generation()
		api.put(uidB, "batch", "job-x7", map[string]string{"worker": cid3})
		testkit.Eventually(t, "the added pod's names", func() bool { return lookup(r, pathB) == podLabels{"batch", "job-x7", "worker"} })
		if r.Generation() == gen {
			t.Error("generation unchanged by a new pod")
		}
		// A deleted pod keeps naming its cgroups for a while (its last
		// counts), then falls back to its UID.
		gen = r.Generation()
		api.del(uidB)
		testkit.Eventually(t, "the deletion", func() bool {
			r.mu.RLock()
			defer r.mu.RUnlock()
			return r.byUID[uidB] != nil && !r.byUID[uidB].deleted.IsZero()
		})
		if got, want := lookup(r, pathB), (podLabels{"batch", "job-x7", "worker"}); got != want || r.Generation() != gen {
			t.Errorf("just deleted: %+v (generation %d, was %d), want %+v", got, r.Generation(), gen, want)
		}
		clock.advance(deletedTTL)
		api.put(uidA, "shop", "web-0", map[string]string{"nginx": cid1, "sidecar": cid2}) // any event
		testkit.Eventually(t, "the deleted pod to fall back to its UID", func() bool { return lookup(r, pathB) == podLabels{"", uidB, cid3} })
		if r.Generation() == gen {
			t.Error("generation unchanged by forgetting a pod")
		}
	})

	t.Run("dropped watch reconnects", func(t *testing.T) {
		before := len(api.watches())
		errsBefore := testutil.ToFloat64(r.errs.WithLabelValues("watch"))
		api.dropWatches()
		testkit.Eventually(t, "a new watch", func() bool { return len(api.watches()) > before })
		ws := api.watches()
		api.mu.Lock()
		last := strconv.Itoa(api.rv)
		api.mu.Unlock()
		if got := ws[len(ws)-1]; got != last {
			t.Errorf("watch resumed from version %s, want the last one seen, %s", got, last)
		}
		if got := testutil.ToFloat64(r.errs.WithLabelValues("watch")); got != errsBefore+1 {
			t.Errorf("watch errors %v, want %v", got, errsBefore+1)
		}
		api.put(uidC, "shop", "web-1", map[string]string{"nginx": cid3})
		testkit.Eventually(t, "a pod added after the reconnection", func() bool {
			return lookup(r, systemdPath(uidC, cid3)) == podLabels{"shop", "web-1", "nginx"}
		})
	})

	t.Run("401 and 500 fall back to UIDs", func(t *testing.T) {
		// A new resolver whose token the server refuses, then a server
		// error: labels carry UIDs and ids, the errors are logged and
		// counted; once the server answers, names come.
		logs := &testkit.LogBuffer{}
		dir := serviceAccountDir(t, srv)
		if err := os.WriteFile(filepath.Join(dir, "token"), []byte("revoked"), 0o600); err != nil {
			t.Fatal(err)
		}
		r2 := New(ctx, Options{APIServer: srv.URL, ServiceAccountDir: dir, NodeName: "node-a", Logger: slog.New(slog.NewTextHandler(logs, nil))})
		r2.Start()
		testkit.Eventually(t, "a 401 counted", func() bool { return testutil.ToFloat64(r2.errs.WithLabelValues("list")) >= 1 })
		if got, want := lookup(r2, pathA1), (podLabels{"", uidA, cid1}); got != want {
			t.Errorf("after 401: %+v, want %+v", got, want)
		}
		if !strings.Contains(logs.String(), "API server answered 401: Unauthorized") {
			t.Errorf("401 not logged:\n%s", logs)
		}
		// The rotated token is read on the next request; the server
		// answers it 500 once, then the pods.
		api.failNext(http.StatusInternalServerError)
		if err := os.WriteFile(filepath.Join(dir, "token"), []byte(testToken), 0o600); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, "names after the failures", func() bool { return lookup(r2, pathA1) == podLabels{"shop", "web-0", "nginx"} })
		if !strings.Contains(logs.String(), "API server answered 500: injected failure 500") {
			t.Errorf("500 not logged:\n%s", logs)
		}
		if got := testutil.ToFloat64(r2.errs.WithLabelValues("list")); got < 2 {
			t.Errorf("list errors %v, want the 401 and the 500", got)
		}
	})

	t.Run("410 lists again", func(t *testing.T) {
		api.mu.Lock()
		lists := api.lists
		api.mu.Unlock()
		api.failNext(http.StatusGone)
		api.dropWatches()
		api.del(uidC)
		testkit.Eventually(t, "a new list", func() bool {
			api.mu.Lock()
			defer api.mu.Unlock()
			return api.lists > lists
		})
		// Missing from the new list: deleted, named for a while.
		testkit.Eventually(t, "the pod deleted while relisting", func() bool {
			r.mu.RLock()
			defer r.mu.RUnlock()
			return r.byUID[uidC] != nil && !r.byUID[uidC].deleted.IsZero()
		})
		clock.advance(deletedTTL)
		api.put(uidA, "shop", "web-0", map[string]string{"nginx": cid1, "sidecar": cid2, "debug": cid3[:62] + "ff"})
		testkit.Eventually(t, "the pod forgotten", func() bool { return lookup(r, systemdPath(uidC, cid3)) == podLabels{"", uidC, cid3} })
	})

	if err := testutil.CollectAndCompare(r, strings.NewReader(`
# HELP probe_exporter_kubernetes_pods Pods of this node known from the Kubernetes API server, whose names label cgroups.
# TYPE probe_exporter_kubernetes_pods gauge
probe_exporter_kubernetes_pods 1
`), "probe_exporter_kubernetes_pods"); err != nil {
		t.Error(err)
	}
}

func TestResolverWithoutAPI(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		log  string
	}{
		{"no API server", Options{NodeName: "n"}, "no API server"},
		{"no node name", Options{APIServer: "https://127.0.0.1:1"}, "no node name"},
		{"no service account", Options{APIServer: "https://127.0.0.1:1", NodeName: "n", ServiceAccountDir: "/nonexistent"}, "service account CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testkit.LogBuffer{}
			tc.opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
			r := New(context.Background(), tc.opts)
			r.Start()
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, logs)
			}
			if got, want := lookup(r, systemdPath(uidA, cid1)), (podLabels{"", uidA, cid1}); got != want {
				t.Errorf("%+v, want %+v", got, want)
			}
		})
	}
}

func TestResolverMaxPods(t *testing.T) {
	r := New(context.Background(), Options{MaxPods: 2})
	var objs []podObject
	for i, uid := range []string{uidA, uidB, uidC} {
		var o podObject
		o.Metadata = objectMeta{UID: uid, Namespace: "ns", Name: "p" + strconv.Itoa(i)}
		objs = append(objs, o)
	}
	r.replace(podsOf(t, objs), false)
	if n := len(r.byUID); n != 2 {
		t.Fatalf("%d pods kept, want 2", n)
	}
	var o podObject
	o.Metadata = objectMeta{UID: "dddddddd-cccc-4ddd-8eee-ffffffffffff", Namespace: "ns", Name: "late"}
	r.apply("ADDED", &o)
	if n := len(r.byUID); n != 2 {
		t.Fatalf("%d pods kept after an add, want 2", n)
	}
}

func TestResolverStaticPod(t *testing.T) {
	const hash = "7cf2a9c1f4b5d6e7f8a9b0c1d2e3f4a5"
	r := New(context.Background(), Options{})
	var o podObject
	o.Metadata = objectMeta{UID: uidA, Namespace: "kube-system", Name: "kube-apiserver-node-a", Annotations: map[string]string{mirrorAnnotation: hash}}
	o.Status.ContainerStatuses = []containerStatus{{Name: "kube-apiserver", ContainerID: "cri-o://" + cid1}}
	r.apply("ADDED", &o)
	path := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + hash + ".slice/crio-" + cid1 + ".scope"
	if got, want := lookup(r, path), (podLabels{"kube-system", "kube-apiserver-node-a", "kube-apiserver"}); got != want {
		t.Errorf("%+v, want %+v", got, want)
	}
}

// TestResolverGeneration: only changes to what labels show move the
// generation (status updates of a running pod are frequent).
func TestResolverGeneration(t *testing.T) {
	r := New(context.Background(), Options{})
	mk := func(name string, cids ...string) *podObject {
		var o podObject
		o.Metadata = objectMeta{UID: uidA, Namespace: "ns", Name: "p", ResourceVersion: name}
		for i, id := range cids {
			o.Status.ContainerStatuses = append(o.Status.ContainerStatuses, containerStatus{Name: "c" + strconv.Itoa(i), ContainerID: "containerd://" + id})
		}
		return &o
	}
	steps := []struct {
		typ  string
		obj  *podObject
		bump bool
	}{
		{"ADDED", mk("1"), true},
		{"MODIFIED", mk("2"), false},
		{"MODIFIED", mk("3", cid1), true},
		{"MODIFIED", mk("4", cid1), false},
		{"DELETED", mk("5", cid1), false}, // still named, for deletedTTL
		{"DELETED", mk("6", cid1), false},
	}
	clock := &testClock{}
	r.now = clock.now
	for i, s := range steps {
		gen := r.Generation()
		r.apply(s.typ, s.obj)
		if got := r.Generation() != gen; got != s.bump {
			t.Errorf("step %d (%s): generation moved %v, want %v", i, s.typ, got, s.bump)
		}
	}
	clock.advance(deletedTTL)
	gen := r.Generation()
	other := mk("7")
	other.Metadata.UID = uidB
	r.apply("ADDED", other)
	if r.Generation() == gen || r.byUID[uidA] != nil {
		t.Error("the deleted pod was not forgotten after deletedTTL")
	}
}

// BenchmarkResolverPod: naming a container's cgroup among the 110 pods a
// kubelet runs at most by default.
func BenchmarkResolverPod(b *testing.B) {
	r := New(context.Background(), Options{})
	var objs []podObject
	for i := range 110 {
		var o podObject
		o.Metadata = objectMeta{UID: fmt.Sprintf("%08x-2222-4333-8444-555555555555", i), Namespace: "ns", Name: "p" + strconv.Itoa(i)}
		o.Status.ContainerStatuses = []containerStatus{{Name: "app", ContainerID: "containerd://" + fmt.Sprintf("%064x", i)}}
		objs = append(objs, o)
	}
	r.replace(podsOf(b, objs), false)
	path := systemdPath(fmt.Sprintf("%08x-2222-4333-8444-555555555555", 42), fmt.Sprintf("%064x", 42))
	if got := lookup(r, path); got != (podLabels{"ns", "p42", "app"}) {
		b.Fatalf("%+v", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Pod(path)
	}
}

// podsOf keeps what labels need of objs.
func podsOf(t testing.TB, objs []podObject) []*pod {
	var out []*pod
	for i := range objs {
		p, err := toPod(&objs[i])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestWatchEventLimit: a watch event over the object bound ends the watch
// with an error rather than growing the exporter's memory.
func TestWatchEventLimit(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"type":"ADDED","object":{"metadata":{"uid":"u","resourceVersion":"2"}}}`+"\n")
		fmt.Fprint(w, `{"type":"ADDED","object":{"metadata":{"uid":"v","annotations":{"big":"`)
		chunk := strings.Repeat("x", 1<<20)
		for range defaultLimits.object>>20 + 1 {
			if _, err := fmt.Fprint(w, chunk); err != nil {
				return
			}
		}
		fmt.Fprint(w, `"}}}}`+"\n")
	}))
	defer srv.Close()
	c, err := newClient(srv.URL, serviceAccountDir(t, srv), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	rv, err := c.watch(context.Background(), "1", time.Minute, func(_ string, p *podObject) { seen = append(seen, p.Metadata.UID) })
	if err == nil || !strings.Contains(err.Error(), "a watch event over") {
		t.Fatalf("error %v", err)
	}
	if rv != "2" || len(seen) != 1 || seen[0] != "u" {
		t.Errorf("version %s, pods %q: want 2 and the first event's pod", rv, seen)
	}
}
