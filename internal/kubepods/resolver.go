package kubepods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Resolver.
type Options struct {
	// APIServer is the API server's URL; empty: no names, labels carry
	// pod UIDs and container ids. InClusterAPIServer gives it in a pod.
	APIServer string
	// ServiceAccountDir holds the service account's token and ca.crt
	// (DefaultServiceAccountDir when empty).
	ServiceAccountDir string
	// NodeName is this node: only its pods are listed and watched
	// (fieldSelector spec.nodeName). Without it, no names.
	NodeName string
	// MaxPods bounds the pods kept (1024 when 0; the kubelet runs at most
	// 110 by default). Pods over it keep UID labels and are logged.
	MaxPods int
	// MetricsNamespace prefixes the resolver's metrics.
	MetricsNamespace string
	Logger           *slog.Logger
}

// Backoff between failed requests: doubling from minBackoff to maxBackoff,
// back to minBackoff after a success.
const (
	minBackoff   = time.Second
	maxBackoff   = time.Minute
	watchTimeout = 5 * time.Minute
)

// mirrorAnnotation holds, on a static pod's mirror pod, the static pod's
// config hash: the UID its cgroups are named by.
const mirrorAnnotation = "kubernetes.io/config.mirror"

type pod struct {
	uid, namespace, name, mirror string
	containers                   map[string]string // container id -> name
	deleted                      time.Time         // when the API server said so
}

func (p *pod) equal(q *pod) bool {
	return p.uid == q.uid && p.namespace == q.namespace && p.name == q.name && p.mirror == q.mirror && maps.Equal(p.containers, q.containers)
}

// Resolver names the pods and containers of cgroup paths. Names come from
// the API server once Start has been called and the options allow it;
// until then, and for pods it does not know, the pod label is the UID and
// the container label the container id.
type Resolver struct {
	opts   Options
	ctx    context.Context
	logger *slog.Logger
	start  sync.Once

	now func() time.Time

	mu     sync.RWMutex
	byUID  map[string]*pod // deleted pods too, for deletedTTL
	byHash map[string]*pod // static pods, by config hash
	full   bool            // a pod was left out for MaxPods
	gen    atomic.Uint64

	errs    *prometheus.CounterVec
	podsDsc *prometheus.Desc
}

// New returns a resolver that will watch the API server until ctx ends.
// Nothing is requested before Start.
func New(ctx context.Context, opts Options) *Resolver {
	if opts.ServiceAccountDir == "" {
		opts.ServiceAccountDir = DefaultServiceAccountDir
	}
	if opts.MaxPods <= 0 {
		opts.MaxPods = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Resolver{
		opts:   opts,
		ctx:    ctx,
		now:    time.Now,
		logger: opts.Logger.With("component", "kubernetes"),
		byUID:  map[string]*pod{},
		byHash: map[string]*pod{},
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: opts.MetricsNamespace, Name: "kubernetes_api_errors_total",
			Help: "Failed requests to the Kubernetes API server for the pods of this node, by request (list, watch, setup).",
		}, []string{"request"}),
		podsDsc: prometheus.NewDesc(prometheus.BuildFQName(opts.MetricsNamespace, "", "kubernetes_pods"),
			"Pods of this node known from the Kubernetes API server, whose names label cgroups.", nil, nil),
	}
}

// Start begins listing and watching the node's pods (once; later calls do
// nothing). Decoders call it when a config uses them, so that an exporter
// without Kubernetes labels never talks to the API server.
func (r *Resolver) Start() {
	r.start.Do(func() {
		for _, req := range []string{"list", "watch", "setup"} {
			r.errs.WithLabelValues(req)
		}
		switch {
		case r.opts.APIServer == "":
			r.logger.Info("Kubernetes labels carry pod UIDs and container ids: no API server (KUBERNETES_SERVICE_HOST or --kubernetes.api-server)")
			return
		case r.opts.NodeName == "":
			r.logger.Info("Kubernetes labels carry pod UIDs and container ids: no node name (NODE_NAME or --kubernetes.node-name)")
			return
		}
		c, err := newClient(r.opts.APIServer, r.opts.ServiceAccountDir, r.opts.NodeName)
		if err != nil {
			r.errs.WithLabelValues("setup").Inc()
			r.logger.Warn("Kubernetes labels carry pod UIDs and container ids", "err", err)
			return
		}
		r.logger.Info("watching the pods of this node", "api_server", r.opts.APIServer, "node", r.opts.NodeName)
		go r.run(c)
	})
}

// Generation changes whenever a name Pod gives may have changed, so that
// cached labels are decoded again. It forgets the pods deleted over
// deletedTTL ago (callers ask at every scrape).
func (r *Resolver) Generation() uint64 {
	r.mu.Lock()
	if r.purge(r.now()) {
		r.gen.Add(1)
	}
	r.mu.Unlock()
	return r.gen.Load()
}

// Pod returns the namespace, pod and container names of the cgroup at
// path; ok is false for cgroups outside pods. Unknown pods give an empty
// namespace and the UID as pod; unknown containers their id. Deleted pods
// keep their names for deletedTTL.
func (r *Resolver) Pod(path string) (namespace, name, container string, ok bool) {
	ref, ok := ParsePath(path)
	if !ok {
		return "", "", "", false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	p := r.byUID[ref.PodUID]
	if p == nil {
		p = r.byHash[ref.PodUID]
	}
	if p == nil {
		return "", ref.PodUID, ref.ContainerID, true
	}
	container = ref.ContainerID
	if n, ok := p.containers[container]; ok {
		container = n
	}
	return p.namespace, p.name, container, true
}

// Describe implements prometheus.Collector.
func (r *Resolver) Describe(ch chan<- *prometheus.Desc) {
	r.errs.Describe(ch)
	ch <- r.podsDsc
}

// Collect implements prometheus.Collector.
func (r *Resolver) Collect(ch chan<- prometheus.Metric) {
	r.errs.Collect(ch)
	r.mu.RLock()
	n := r.live()
	r.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(r.podsDsc, prometheus.GaugeValue, float64(n))
}

// run lists and watches until the context ends.
func (r *Resolver) run(c *client) {
	ctx := r.ctx
	backoff := minBackoff
	wait := func() {
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			l, err := c.list(ctx, r.opts.MaxPods)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.errs.WithLabelValues("list").Inc()
				r.logger.Warn("listing the pods of this node; labels carry pod UIDs and container ids until it succeeds", "err", err, "retry_in", backoff)
				wait()
				continue
			}
			for _, err := range l.invalid {
				r.logger.Warn("a pod of the list is left out: its cgroups keep UID labels", "err", err)
			}
			r.replace(l.pods, l.full)
			r.logger.Debug("listed the pods of this node", "pods", len(l.pods), "resource_version", l.rv)
			rv, backoff = l.rv, minBackoff
		}
		wctx, cancel := context.WithTimeout(ctx, watchTimeout+30*time.Second)
		next, err := c.watch(wctx, rv, watchTimeout, r.apply)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errGone):
			r.logger.Debug("watch expired; listing again", "resource_version", rv)
			rv = ""
		case err != nil:
			r.errs.WithLabelValues("watch").Inc()
			r.logger.Warn("watching the pods of this node", "err", err, "retry_in", backoff)
			rv = next
			wait()
		default:
			rv, backoff = next, minBackoff
		}
	}
}

// Bounds of what is kept of a pod, from Kubernetes' own validation (names
// of containers and namespaces are DNS labels of 63 bytes, a pod's name a
// DNS subdomain of 253; UIDs and container ids are 36 and 64 bytes, 128 is
// allowed), so that a pod holds a few KiB at most whatever the API server
// sends.
const (
	maxIDBytes         = 128
	maxNameBytes       = 253
	maxLabelNameBytes  = 63
	maxContainersOfPod = 128
)

// toPod keeps what labels need of a pod, or says why the pod is refused.
func toPod(o *podObject) (*pod, error) {
	m := &o.Metadata
	p := &pod{
		uid:        m.UID,
		namespace:  m.Namespace,
		name:       m.Name,
		mirror:     m.Annotations[mirrorAnnotation],
		containers: map[string]string{},
	}
	switch {
	case p.uid == "" || len(p.uid) > maxIDBytes:
		return nil, fmt.Errorf("pod %.64q: a UID of %d bytes", p.name, len(p.uid))
	case len(p.name) > maxNameBytes, len(p.namespace) > maxLabelNameBytes, len(p.mirror) > maxIDBytes:
		return nil, fmt.Errorf("pod %s: a name, namespace or %s annotation longer than Kubernetes allows", p.uid, mirrorAnnotation)
	}
	n := 0
	for _, list := range [][]containerStatus{o.Status.ContainerStatuses, o.Status.InitContainerStatuses, o.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if n++; n > maxContainersOfPod {
				return nil, fmt.Errorf("pod %s: more than %d containers", p.uid, maxContainersOfPod)
			}
			// "containerd://ID", "cri-o://ID", "docker://ID"
			_, id, ok := strings.Cut(cs.ContainerID, "://")
			if !ok || id == "" {
				continue
			}
			if len(id) > maxIDBytes || len(cs.Name) > maxLabelNameBytes {
				return nil, fmt.Errorf("pod %s: a container name or id longer than Kubernetes allows", p.uid)
			}
			p.containers[strings.ToLower(id)] = cs.Name
		}
	}
	return p, nil
}

// replace sets the pods to a fresh list (full: some were left out for
// MaxPods). Pods known before and missing from it are kept as deleted
// (see apply).
func (r *Resolver) replace(pods []*pod, full bool) {
	now := r.now()
	byUID := map[string]*pod{}
	for _, p := range pods {
		if len(byUID) >= r.opts.MaxPods {
			full = true
			break
		}
		byUID[p.uid] = p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for uid, p := range byUID {
		if old := r.byUID[uid]; old == nil || !old.equal(p) {
			changed = true
		}
	}
	for uid, old := range r.byUID {
		if _, ok := byUID[uid]; !ok {
			if old.deleted.IsZero() {
				gone := *old
				gone.deleted = now
				old = &gone
			}
			byUID[uid] = old
		}
	}
	r.byUID = byUID
	r.byHash = map[string]*pod{}
	for _, p := range byUID {
		if p.mirror != "" {
			r.byHash[p.mirror] = p
		}
	}
	r.noteFull(full)
	if r.purge(now) || changed {
		r.gen.Add(1)
	}
}

// deletedTTL is how long a deleted pod keeps naming its cgroups: the
// API server reports the deletion about when the kubelet removes the
// pod's cgroups, and its last counts should not flip to its UID.
const deletedTTL = 5 * time.Minute

// apply takes one watch event in.
func (r *Resolver) apply(typ string, o *podObject) {
	now := r.now()
	p, err := toPod(o)
	if err != nil {
		r.logger.Warn("a pod of the watch is left out: its cgroups keep UID labels", "event", typ, "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := r.purge(now)
	defer func() {
		if changed {
			r.gen.Add(1)
		}
	}()
	old := r.byUID[p.uid]
	if typ == "DELETED" {
		if old != nil && old.deleted.IsZero() {
			gone := *old
			gone.deleted = now
			r.put(old, &gone)
		}
		return
	}
	if old != nil && old.deleted.IsZero() && old.equal(p) {
		return
	}
	if old == nil && r.live() >= r.opts.MaxPods {
		r.noteFull(true)
		return
	}
	r.put(old, p)
	changed = true
}

// put replaces old (nil: none) by p. Callers hold mu.
func (r *Resolver) put(old, p *pod) {
	if old != nil && old.mirror != "" && r.byHash[old.mirror] == old {
		delete(r.byHash, old.mirror)
	}
	r.byUID[p.uid] = p
	if p.mirror != "" {
		r.byHash[p.mirror] = p
	}
}

// purge forgets the pods deleted over deletedTTL ago, reporting whether
// it did. Callers hold mu.
func (r *Resolver) purge(now time.Time) bool {
	purged := false
	for uid, p := range r.byUID {
		if !p.deleted.IsZero() && now.Sub(p.deleted) >= deletedTTL {
			delete(r.byUID, uid)
			if p.mirror != "" && r.byHash[p.mirror] == p {
				delete(r.byHash, p.mirror)
			}
			purged = true
		}
	}
	return purged
}

// live counts the pods not deleted. Callers hold mu.
func (r *Resolver) live() int {
	n := 0
	for _, p := range r.byUID {
		if p.deleted.IsZero() {
			n++
		}
	}
	return n
}

// noteFull logs when pods start being left out. Callers hold mu.
func (r *Resolver) noteFull(full bool) {
	if full && !r.full {
		r.logger.Warn("more pods on this node than kept; the others keep UID labels", "max_pods", r.opts.MaxPods)
	}
	r.full = full
}
