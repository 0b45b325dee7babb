package collector

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// HandlerOpts configure Handler; they mean what promhttp.HandlerOpts'
// fields of the same names mean. Errors are handled as with
// promhttp.ContinueOnError.
type HandlerOpts struct {
	ErrorLog promhttp.Logger
	// Registry, if set, gets promhttp_metric_handler_errors_total.
	Registry            prometheus.Registerer
	MaxRequestsInFlight int
	EnableOpenMetrics   bool
	DisableCompression  bool
}

// Handler serves the families of g (the exporter's own metrics, through
// client_golang's encoders) and the map families of the collector, which
// are written straight from the scrape's frames by streamWriter in text,
// OpenMetrics 1.0 and delimited protobuf (other formats go through dto).
// It answers as promhttp.HandlerFor(prometheus.Gatherers{g, c}, ...)
// would: the same negotiation of format and compression, families in name
// order, the name[] filter. Map families are written after the configs'
// locks are released, so a slow client does not hold up other scrapes.
func (c *Collector) Handler(g prometheus.Gatherer, opts HandlerOpts) http.Handler {
	errCnt := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "promhttp_metric_handler_errors_total",
		Help: "Total number of internal errors encountered by the promhttp metric handler.",
	}, []string{"cause"})
	if opts.Registry != nil {
		errCnt.WithLabelValues("gathering")
		errCnt.WithLabelValues("encoding")
		if err := opts.Registry.Register(errCnt); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err)
			}
			errCnt = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	h := &handler{gather: c.gather, g: g, opts: opts, errCnt: errCnt}
	if opts.MaxRequestsInFlight > 0 {
		h.inFlight = make(chan struct{}, opts.MaxRequestsInFlight)
	}
	h.accepted = expfmt.DefaultAcceptedFormats()
	if opts.EnableOpenMetrics {
		h.accepted = expfmt.DefaultOpenMetricsAcceptedFormats()
	}
	return h
}

type handler struct {
	gather   *gatherer
	g        prometheus.Gatherer
	opts     HandlerOpts
	errCnt   *prometheus.CounterVec
	inFlight chan struct{}
	accepted []expfmt.Format
	// Reused across scrapes: gzip writers (about 1 MB each) and stream
	// writers with their buffers.
	gzips   freeList[*gzip.Writer]
	writers freeList[*streamWriter]
}

// freeList keeps a few released objects for reuse. Unlike a sync.Pool it
// is not emptied by garbage collections, so steady scrapes allocate no
// writers.
type freeList[T any] struct {
	mu    sync.Mutex
	items []T
}

func (l *freeList[T]) get() (T, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var zero T
	n := len(l.items)
	if n == 0 {
		return zero, false
	}
	t := l.items[n-1]
	l.items = l.items[:n-1]
	return t, true
}

func (l *freeList[T]) put(t T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.items) < 4 {
		l.items = append(l.items, t)
	}
}

func (h *handler) logf(format string, args ...any) {
	if h.opts.ErrorLog != nil {
		h.opts.ErrorLog.Println(fmt.Sprintf(format, args...))
	}
}

func (h *handler) ServeHTTP(rsp http.ResponseWriter, req *http.Request) {
	if h.inFlight != nil {
		select {
		case h.inFlight <- struct{}{}:
			defer func() { <-h.inFlight }()
		default:
			http.Error(rsp, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", h.opts.MaxRequestsInFlight), http.StatusServiceUnavailable)
			return
		}
	}
	mfs, err := h.g.Gather()
	if err != nil {
		h.logf("error gathering metrics: %v", err)
		h.errCnt.WithLabelValues("gathering").Inc()
	}
	frames := h.gather.frames()
	defer func() {
		for _, f := range frames {
			f.release()
		}
	}()

	format := expfmt.NegotiateAccept(req.Header, h.accepted...)
	rsp.Header().Add("Vary", "Accept")
	if !h.opts.DisableCompression {
		rsp.Header().Add("Vary", "Accept-Encoding")
	}
	rsp.Header().Set("Content-Type", string(format))
	var w io.Writer = rsp
	if !h.opts.DisableCompression && negotiateEncoding(req.Header.Get("Accept-Encoding")) == "gzip" {
		rsp.Header().Set("Content-Encoding", "gzip")
		gz, ok := h.gzips.get()
		if ok {
			gz.Reset(rsp)
		} else {
			gz, _ = gzip.NewWriterLevel(rsp, gzip.BestSpeed)
		}
		defer func() {
			gz.Close()
			h.gzips.put(gz)
		}()
		w = gz
	}

	var filter map[string]bool
	if names := req.URL.Query()["name[]"]; len(names) > 0 {
		filter = map[string]bool{}
		for _, n := range names {
			filter[n] = true
		}
	}
	cw := &countingWriter{w: w}
	w = cw
	sizes := scrapeSizes{}
	for _, f := range frames {
		if f.mm.owner != nil {
			sizes[f.mm.owner] += 0
		}
	}
	enc := expfmt.NewEncoder(w, format)
	wire := wireFormatOf(format)
	sw, ok := h.writers.get()
	if !ok {
		sw = &streamWriter{}
	}
	sw.w, sw.err = w, nil
	defer func() {
		sw.w = nil
		h.writers.put(sw)
	}()

	groups := groupFrames(frames)
	for len(mfs) > 0 || len(groups) > 0 {
		var err error
		switch {
		case len(groups) == 0 || len(mfs) > 0 && mfs[0].GetName() <= groups[0][0].mm.name:
			mf := mfs[0]
			mfs = mfs[1:]
			if len(groups) > 0 && mf.GetName() == groups[0][0].mm.name {
				h.logf("map metric %q collides with a metric of the exporter; not served", mf.GetName())
				h.errCnt.WithLabelValues("gathering").Inc()
				groups = groups[1:]
			}
			if filter != nil && !filter[mf.GetName()] {
				continue
			}
			err = enc.Encode(mf)
		default:
			group := groups[0]
			groups = groups[1:]
			if filter != nil && !filter[group[0].mm.name] {
				continue
			}
			before := cw.n + int64(len(sw.buf))
			err = h.writeGroup(sw, enc, wire, group)
			sizes.add(group, cw.n+int64(len(sw.buf))-before)
		}
		if cw.err != nil {
			// The client is gone (or its write deadline passed): every
			// further family would fail the same way, each logged.
			h.logf("error sending metrics, answer cut short: %v", cw.err)
			h.errCnt.WithLabelValues("encoding").Inc()
			return
		}
		if err != nil {
			h.logf("error encoding and sending metric family: %v", err)
			h.errCnt.WithLabelValues("encoding").Inc()
		}
	}
	if filter == nil {
		sizes.store()
	}
	if closer, ok := enc.(expfmt.Closer); ok {
		if err := closer.Close(); err != nil {
			h.logf("error encoding and sending metric family: %v", err)
			h.errCnt.WithLabelValues("encoding").Inc()
		}
	}
}

// writeGroup writes the frames of one family name: streamed where the
// format and the names allow it, otherwise as one dto family.
func (h *handler) writeGroup(sw *streamWriter, enc expfmt.Encoder, wire wireFormat, group []*frame) error {
	first := group[0].mm
	plain := true
	kept := group[:0:0]
	for _, f := range group {
		if f.mm.kind != first.kind {
			h.logf("map metric %q is a %s in one config and a %s in another; the second is not served", first.name, kindName(first.kind), kindName(f.mm.kind))
			continue
		}
		kept = append(kept, f)
		plain = plain && f.mm.plain
	}
	if wire != wireOther && plain {
		return sw.writeFamily(wire, kept)
	}
	mf := kept[0].toDTO()
	for _, f := range kept[1:] {
		mf.Metric = append(mf.Metric, f.toDTO().Metric...)
	}
	if len(mf.Metric) == 0 {
		return nil
	}
	return enc.Encode(mf)
}

func kindName(k metricKind) string {
	return [...]string{"counter", "gauge", "histogram"}[k]
}

// groupFrames sorts frames by name and groups those of the same name
// (configs defining the same metric), keeping the configs' order.
func groupFrames(frames []*frame) [][]*frame {
	sorted := slices.Clone(frames)
	slices.SortStableFunc(sorted, func(a, b *frame) int { return cmp.Compare(a.mm.name, b.mm.name) })
	var groups [][]*frame
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j].mm.name == sorted[i].mm.name {
			j++
		}
		groups = append(groups, sorted[i:j])
		i = j
	}
	return groups
}

// negotiateEncoding picks identity or gzip from an Accept-Encoding header
// as promhttp does: the offer (identity, then gzip) with the highest
// quality wins, the first on a tie.
func negotiateEncoding(header string) string {
	best, bestQ := "identity", -1.0
	type spec struct {
		value string
		q     float64
	}
	var specs []spec
	for _, part := range strings.Split(header, ",") {
		value, params, _ := strings.Cut(part, ";")
		value = strings.TrimSpace(value)
		if value == "" {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.TrimSpace(k) == "q" {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		specs = append(specs, spec{value, q})
	}
	for _, offer := range []string{"identity", "gzip"} {
		for _, s := range specs {
			if s.q > bestQ && (s.value == "*" || s.value == offer) {
				best, bestQ = offer, s.q
			}
		}
	}
	if bestQ == 0 {
		return "identity"
	}
	return best
}
