// Package ingest accepts profiles pushed with Pyroscope's /ingest API
// (folded or line stacks, pprof) and hands them to a sink such as the
// export rules.
//
// Every resource a push can take is bounded: bytes on the wire
// (MaxBodyBytes), bytes after decompression, counted while decompressing
// (MaxDecompressedBytes), time to send the body (BodyTimeout), and the
// memory all pushes in flight hold together (MaxInflightBytes: over it a
// push is answered 503 with Retry-After).
package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/pprof/profile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/rules"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes         = 16 << 20
	DefaultMaxDecompressedBytes = 64 << 20
	DefaultMaxInflightBytes     = 128 << 20
	DefaultBodyTimeout          = 30 * time.Second
)

// Options configure the handler; zero values take the defaults.
type Options struct {
	// MaxBodyBytes caps a request body as sent (413 over it).
	MaxBodyBytes int64
	// MaxDecompressedBytes caps a body after gzip decompression (413).
	MaxDecompressedBytes int64
	// MaxInflightBytes caps the memory that all pushes being read and
	// decoded hold together; a push that would go over it is answered 503
	// with Retry-After.
	MaxInflightBytes int64
	// BodyTimeout is how long a client has to send its body (408 after).
	BodyTimeout time.Duration
	Logger      *slog.Logger
}

// Handler serves POST /ingest.
type Handler struct {
	sink     rules.Sink
	opts     Options
	inflight atomic.Int64
	answers  *prometheus.CounterVec
}

// NewHandler returns the /ingest handler.
func NewHandler(sink rules.Sink, opts Options) *Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxDecompressedBytes <= 0 {
		opts.MaxDecompressedBytes = DefaultMaxDecompressedBytes
	}
	if opts.MaxInflightBytes <= 0 {
		opts.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{sink: sink, opts: opts, answers: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "probe_exporter_ingest_requests_total",
		Help: "Pushes to /ingest by HTTP status answered.",
	}, []string{"code"})}
}

// Describe implements prometheus.Collector: the handler's own metrics.
func (h *Handler) Describe(ch chan<- *prometheus.Desc) {
	h.answers.Describe(ch)
	ch <- inflightDesc
}

var inflightDesc = prometheus.NewDesc("probe_exporter_ingest_inflight_bytes",
	"Memory held by pushes being read and decoded, as counted against --ingest.max-inflight-bytes.", nil, nil)

// Collect implements prometheus.Collector.
func (h *Handler) Collect(ch chan<- prometheus.Metric) {
	h.answers.Collect(ch)
	if m, err := prometheus.NewConstMetric(inflightDesc, prometheus.GaugeValue, float64(h.inflight.Load())); err == nil {
		ch <- m
	}
}

// params are the query parameters of a push, with Pyroscope's defaults.
type params struct {
	app         string
	tags        map[string]string
	from, until time.Time
	sampleRate  uint32
	spyName     string
	units       string
	aggregation string
	format      string
}

// httpError is an answer other than 200.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

var errTooBigForBudget = &httpError{http.StatusRequestEntityTooLarge, "decoding this push takes more memory than --ingest.max-inflight-bytes allows"}

var errBusy = &httpError{http.StatusServiceUnavailable, "ingest is at its in-flight memory bound (--ingest.max-inflight-bytes); retry later"}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code, msg := h.serve(w, r)
	h.answers.WithLabelValues(strconv.Itoa(code)).Inc()
	if code == http.StatusOK {
		w.WriteHeader(code)
		return
	}
	switch code {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "close")
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	}
	http.Error(w, msg, code)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (int, string) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, "ingest needs POST"
	}
	p, err := parseParams(r)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes (--ingest.max-bytes)", h.opts.MaxBodyBytes)
	}
	// The deadline is per request, so that scrapes keep their own timeouts.
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(h.opts.BodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return http.StatusInternalServerError, "setting the body deadline: " + err.Error()
	}
	l := &lease{h: h}
	defer l.release()
	profiles, err := h.decode(p, r.Header, http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes), l)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return he.code, he.msg
		}
		return http.StatusBadRequest, err.Error()
	}
	for _, prof := range profiles {
		h.sink.ObserveProfile(prof)
	}
	return http.StatusOK, ""
}

// lease is the share of MaxInflightBytes one push holds.
type lease struct {
	h *Handler
	n int64
}

func (l *lease) take(n int64) error {
	if n <= 0 {
		return nil
	}
	if l.n+n > l.h.opts.MaxInflightBytes {
		// Alone over the bound: waiting would not help.
		return errTooBigForBudget
	}
	if l.h.inflight.Add(n) > l.h.opts.MaxInflightBytes {
		l.h.inflight.Add(-n)
		return errBusy
	}
	l.n += n
	return nil
}

func (l *lease) release() {
	l.h.inflight.Add(-l.n)
	l.n = 0
}

var (
	appRE = regexp.MustCompile(`^[A-Za-z0-9_.\-/]+$`)
	keyRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
)

// Bounds of a push's name.
const (
	maxTags          = 64
	maxTagValueBytes = 2048
)

// parseName parses Pyroscope's segment key "app.cpu{k=v,k2=v2}". Tag
// values must be UTF-8 (they become label values).
func parseName(s string) (string, map[string]string, error) {
	app, rest, hasTags := strings.Cut(s, "{")
	app = strings.TrimSpace(app)
	if app == "" || !appRE.MatchString(app) {
		return "", nil, fmt.Errorf("name %q: invalid application name", s)
	}
	tags := map[string]string{}
	if !hasTags {
		return app, tags, nil
	}
	if !strings.HasSuffix(rest, "}") {
		return "", nil, fmt.Errorf("name %q: unclosed {", s)
	}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || !keyRE.MatchString(k):
			return "", nil, fmt.Errorf("name: invalid tag %q", kv)
		case !utf8.ValidString(v):
			return "", nil, fmt.Errorf("name: tag %s: value %q is not valid UTF-8", k, v)
		case len(v) > maxTagValueBytes:
			return "", nil, fmt.Errorf("name: tag %s: value longer than %d bytes", k, maxTagValueBytes)
		}
		tags[k] = v
	}
	if len(tags) > maxTags {
		return "", nil, fmt.Errorf("name: %d tags, at most %d", len(tags), maxTags)
	}
	return app, tags, nil
}

// parseTime accepts unix seconds, ms, µs or ns (told apart by magnitude)
// and now, now-1h style expressions.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return now, nil
	}
	if strings.HasPrefix(s, "now") {
		rest := strings.TrimPrefix(s, "now")
		if rest == "" {
			return now, nil
		}
		d, err := time.ParseDuration(strings.TrimPrefix(rest, "+"))
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a unix time", s)
	}
	switch {
	case n > 1e17:
		return time.Unix(0, n), nil
	case n > 1e14:
		return time.UnixMicro(n), nil
	case n > 1e11:
		return time.UnixMilli(n), nil
	}
	return time.Unix(n, 0), nil
}

// parseParams reads the query. from and until are checked but do not
// matter: counters count a profile when it arrives. spyName is accepted
// and ignored, as it only names the agent.
func parseParams(r *http.Request) (params, error) {
	q := r.URL.Query()
	p := params{sampleRate: 100, units: "samples", aggregation: "sum", format: "folded", spyName: q.Get("spyName")}
	var err error
	if p.app, p.tags, err = parseName(q.Get("name")); err != nil {
		return p, err
	}
	now := time.Now()
	if p.from, err = parseTime(q.Get("from"), now); err != nil {
		return p, fmt.Errorf("from: %w", err)
	}
	if p.until, err = parseTime(q.Get("until"), now); err != nil {
		return p, fmt.Errorf("until: %w", err)
	}
	if p.until.Before(p.from) {
		return p, errors.New("until is before from")
	}
	if v := q.Get("sampleRate"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return p, fmt.Errorf("sampleRate %q: want a positive integer", v)
		}
		p.sampleRate = uint32(n)
	}
	if v := q.Get("units"); v != "" {
		if !keyRE.MatchString(v) {
			return p, fmt.Errorf("units %q: invalid", v)
		}
		p.units = v
	}
	if v := q.Get("aggregationType"); v != "" {
		if v != "sum" && v != "average" {
			return p, fmt.Errorf("aggregationType %q: want sum or average", v)
		}
		p.aggregation = v
	}
	if v := q.Get("format"); v != "" {
		switch v {
		case "folded", "lines", "pprof":
		case "trie", "tree":
			return p, fmt.Errorf("format %q is not supported here (use folded, lines or pprof)", v)
		default:
			return p, fmt.Errorf("format %q: want folded, lines or pprof", v)
		}
		p.format = v
	}
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "multipart/form-data") {
		p.format = "pprof"
	}
	return p, nil
}

// decode reads the body into the profiles it holds.
func (h *Handler) decode(p params, hdr http.Header, body io.Reader, l *lease) ([]rules.Profile, error) {
	switch enc := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := h.gunzip(body)
		if err != nil {
			return nil, err
		}
		body = zr
	default:
		return nil, &httpError{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q: only gzip is supported", enc)}
	}
	if p.format == "pprof" {
		return h.decodePprof(p, hdr.Get("Content-Type"), body, l)
	}
	in, err := h.sniffGzip(body)
	if err != nil {
		return nil, err
	}
	samples, err := decodeStacks(in, l, p.format == "lines")
	if err != nil {
		return nil, classify(err)
	}
	prof := rules.Profile{App: p.app, Tags: p.tags, Units: p.units, Divisor: 1, Average: p.aggregation == "average", Samples: samples}
	if p.units == "samples" {
		prof.CPU, prof.Divisor = true, uint64(p.sampleRate)
	}
	return []rules.Profile{prof}, nil
}

// gunzip decompresses r, failing once more than MaxDecompressedBytes come
// out: the count is kept while decompressing, never after.
func (h *Handler) gunzip(r io.Reader) (io.Reader, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, classify(fmt.Errorf("gzip: %w", err))
	}
	zr.Multistream(true)
	return &capReader{r: zr, left: h.opts.MaxDecompressedBytes, max: h.opts.MaxDecompressedBytes}, nil
}

// sniffGzip decompresses a body that starts with the gzip magic bytes.
func (h *Handler) sniffGzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 4096)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, classify(err)
	}
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		return h.gunzip(br)
	}
	return br, nil
}

// capReader fails with a 413 once more than max bytes were read.
type capReader struct {
	r         io.Reader
	left, max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One more byte tells a body of exactly max from a bigger one.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body over %d bytes (--ingest.max-decompressed-bytes)", c.max)}
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// classify turns read errors into answers: the wire bound, the body
// deadline, gzip corruption.
func classify(err error) error {
	var he *httpError
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &mbe):
		return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes (--ingest.max-bytes)", mbe.Limit)}
	case errors.As(err, &ne) && ne.Timeout():
		return &httpError{http.StatusRequestTimeout, "body not received within --ingest.body-timeout"}
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("gzip: %v", err)
	}
	return badRequest("reading body: %v", err)
}

// Memory charged per distinct stack beyond its bytes (map entry, sample).
const stackOverhead = 96

// decodeStacks reads "f1;f2;f3 COUNT" lines (split at the last space), or
// with lines one stack per line counting once. It streams: only distinct
// stacks are kept, each charged to the lease.
func decodeStacks(r io.Reader, l *lease, lines bool) ([]rules.Sample, error) {
	counts := map[string]uint64{}
	var total uint64
	sc := bufio.NewScanner(r)
	const firstBuf = 64 << 10
	sc.Buffer(make([]byte, 0, firstBuf), maxStackBytes)
	charged := int64(firstBuf) // the scanner's buffer, which doubles for long lines
	if err := l.take(charged); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		// A line cut short by a read error reports the read error.
		if err := sc.Err(); err != nil {
			return err
		}
		return badRequest(format, args...)
	}
	for n := 1; sc.Scan(); n++ {
		if n > maxLines {
			return nil, tooMuch("more than %d lines", maxLines)
		}
		if need := 3 * int64(len(sc.Bytes())); need > charged {
			if err := l.take(need - charged); err != nil {
				return nil, err
			}
			charged = need
		}
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		stack, v := line, uint64(1)
		if !lines {
			i := bytes.LastIndexByte(line, ' ')
			if i <= 0 {
				return nil, bad("line %d: want \"stack count\"", n)
			}
			var err error
			if v, err = parseCount(string(line[i+1:])); err != nil {
				return nil, bad("line %d: %v", n, err)
			}
			stack = line[:i]
		}
		if frames := bytes.Count(stack, []byte{';'}) + 1; frames > maxFrames {
			return nil, tooMuch("line %d: a stack of more than %d frames", n, maxFrames)
		}
		old, seen := counts[string(stack)]
		if !seen {
			if len(counts) >= maxStacks {
				return nil, tooMuch("more than %d distinct stacks", maxStacks)
			}
			if err := l.take(int64(len(stack)) + stackOverhead); err != nil {
				return nil, err
			}
		}
		if old > math.MaxUint64-v || total > math.MaxUint64-v {
			return nil, badRequest("line %d: values add up to more than 2^64-1", n)
		}
		counts[string(stack)] = old + v
		total += v
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, tooMuch("a line of more than %d bytes", maxStackBytes)
		}
		return nil, err
	}
	out := make([]rules.Sample, 0, len(counts))
	for s, v := range counts {
		out = append(out, rules.Sample{Stack: s, Value: v})
	}
	return out, nil
}

// parseCount reads a sample count: a non-negative integer below 2^64.
func parseCount(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err == nil {
		return v, nil
	}
	if f, ferr := strconv.ParseFloat(s, 64); ferr == nil || errors.Is(ferr, strconv.ErrRange) {
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0):
			return 0, fmt.Errorf("count %q is not finite", s)
		case f < 0:
			return 0, fmt.Errorf("count %q is negative", s)
		}
	}
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("count %q overflows 64 bits", s)
	}
	return 0, fmt.Errorf("count %q is not a non-negative integer", s)
}

// maxConfigBytes bounds the sample_type_config part of a multipart push.
const maxConfigBytes = 64 << 10

// decodePprof reads a pprof profile (raw, gzipped, or the "profile" field
// of a multipart form as Pyroscope's SDKs send it, with its optional
// sample_type_config), and makes one profile per sample type.
func (h *Handler) decodePprof(p params, contentType string, body io.Reader, l *lease) ([]rules.Profile, error) {
	var data []byte
	var typeConfig map[string]sampleTypeConfig
	if mt, ps, err := mime.ParseMediaType(contentType); err == nil && strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, ps["boundary"])
		found := false
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, classify(fmt.Errorf("multipart: %w", err))
			}
			switch part.FormName() {
			case "profile":
				in, err := h.sniffGzip(part)
				if err != nil {
					return nil, err
				}
				if data, err = h.readAll(in, l); err != nil {
					return nil, err
				}
				found = true
			case "sample_type_config":
				raw, err := io.ReadAll(io.LimitReader(part, maxConfigBytes+1))
				if err != nil {
					return nil, classify(err)
				}
				if len(raw) > maxConfigBytes {
					return nil, badRequest("sample_type_config over %d bytes", maxConfigBytes)
				}
				if err := json.Unmarshal(raw, &typeConfig); err != nil {
					return nil, badRequest("sample_type_config: %v", err)
				}
			default: // prev_profile and others: read past, bounded by the wire cap
				if _, err := io.Copy(io.Discard, part); err != nil {
					return nil, classify(err)
				}
			}
		}
		if !found {
			return nil, badRequest("multipart body has no profile field")
		}
	} else {
		in, err := h.sniffGzip(body)
		if err != nil {
			return nil, err
		}
		if data, err = h.readAll(in, l); err != nil {
			return nil, err
		}
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return nil, badRequest("pprof: gzip inside gzip is not accepted")
	}
	// What the profile decodes into is counted and charged before the
	// decoder builds it: its encoded size says little (an empty sample is
	// two bytes, its object 128).
	counts, err := countPprof(data)
	if err != nil {
		return nil, err
	}
	if err := l.take(counts.memory()); err != nil {
		if errors.Is(err, errTooBigForBudget) {
			return nil, tooMuch("pprof: decoding %d samples, %d locations, %d functions and %d strings takes %d MiB, more than --ingest.max-inflight-bytes allows",
				counts.samples, counts.locations, counts.functions, counts.strings, counts.memory()>>20)
		}
		return nil, err
	}
	prof, err := profile.ParseUncompressed(data)
	if err != nil {
		return nil, badRequest("pprof: %v", err)
	}
	return h.pprofProfiles(p, prof, typeConfig, l)
}

// readAll reads r whole, charging the buffer to the lease as it grows.
func (h *Handler) readAll(r io.Reader, l *lease) ([]byte, error) {
	var buf bytes.Buffer
	charged := 0
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			if buf.Len()+n > buf.Cap() {
				// Charge the grown buffer before it is allocated.
				grown := max(2*buf.Cap()+n, 64<<10)
				if lerr := l.take(int64(grown - charged)); lerr != nil {
					return nil, lerr
				}
				charged = grown
				buf.Grow(n)
			}
			buf.Write(chunk[:n])
		}
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, classify(err)
		}
	}
}

// sampleTypeConfig is how Pyroscope's SDKs describe a pprof sample type.
type sampleTypeConfig struct {
	Units       string `json:"units"`
	Aggregation string `json:"aggregation"`
	DisplayName string `json:"display-name"`
	Sampled     bool   `json:"sampled"`
	Cumulative  bool   `json:"cumulative"`
}

// defaultSampleTypes are Pyroscope's defaults for Go's sample types:
// CPU samples are sampled (divided by the rate into seconds), in-use
// memory and goroutines are averaged, the rest summed.
var defaultSampleTypes = map[string]sampleTypeConfig{
	"samples":       {DisplayName: "cpu", Units: "samples", Sampled: true},
	"inuse_objects": {Units: "objects", Aggregation: "average"},
	"alloc_objects": {Units: "objects"},
	"inuse_space":   {Units: "bytes", Aggregation: "average"},
	"alloc_space":   {Units: "bytes"},
	"goroutine":     {DisplayName: "goroutines", Units: "goroutines", Aggregation: "average"},
	"contentions":   {DisplayName: "mutex_count", Units: "lock_samples"},
	"delay":         {DisplayName: "mutex_duration", Units: "lock_nanoseconds"},
}

// pprofProfiles makes one profile per sample type, named
// <application>.<type> as Pyroscope names them. CPU time (cpu/nanoseconds,
// or sampled "samples" counts) is exported in seconds; other types count as
// they are.
func (h *Handler) pprofProfiles(p params, prof *profile.Profile, cfg map[string]sampleTypeConfig, l *lease) ([]rules.Profile, error) {
	if len(prof.SampleType) == 0 {
		return nil, badRequest("pprof: no sample types")
	}
	hasCPUNanos := false
	for _, st := range prof.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			hasCPUNanos = true
		}
	}
	st, err := newStackTable(prof, l)
	if err != nil {
		return nil, err
	}
	for i, s := range prof.Sample {
		if len(s.Value) != len(prof.SampleType) {
			return nil, badRequest("pprof: sample %d has %d values for %d sample types", i, len(s.Value), len(prof.SampleType))
		}
	}
	// One sum per sample type and distinct stack, and the samples made
	// of them.
	if err := l.take(int64(len(prof.SampleType)) * int64(len(st.stacks)) * (8 + 24)); err != nil {
		if errors.Is(err, errTooBigForBudget) {
			return nil, tooMuch("pprof: %d sample types of %d distinct stacks take more memory than --ingest.max-inflight-bytes allows", len(prof.SampleType), len(st.stacks))
		}
		return nil, err
	}
	var out []rules.Profile
	for idx, typ := range prof.SampleType {
		c, ok := cfg[typ.Type]
		if !ok {
			c, ok = defaultSampleTypes[typ.Type]
		}
		if !ok {
			c = sampleTypeConfig{Units: typ.Unit}
		}
		name := c.DisplayName
		if name == "" {
			name = typ.Type
		}
		rp := rules.Profile{Tags: p.tags, Units: c.Units, Divisor: 1, Average: c.Aggregation == "average" || c.Aggregation == "avg"}
		switch {
		case typ.Type == "cpu" && typ.Unit == "nanoseconds":
			rp.CPU, rp.Divisor, rp.Units, name = true, 1e9, "samples", "cpu"
		case c.Sampled:
			if hasCPUNanos {
				continue // the same CPU time, counted once from nanoseconds
			}
			rp.CPU, rp.Divisor = true, uint64(p.sampleRate)
			if prof.Period > 0 && prof.PeriodType != nil && prof.PeriodType.Unit == "nanoseconds" {
				rp.Divisor = uint64(max(1, math.Round(1e9/float64(prof.Period))))
			}
		}
		if !keyRE.MatchString(name) {
			return nil, badRequest("pprof: invalid sample type %q", name)
		}
		rp.App = p.app
		if !strings.HasSuffix(rp.App, "."+name) {
			rp.App += "." + name
		}
		sums := make([]uint64, len(st.stacks))
		var total uint64
		for i, s := range prof.Sample {
			v := s.Value[idx]
			if v < 0 {
				return nil, badRequest("pprof: sample %d has a negative %s value (%d)", i, typ.Type, v)
			}
			k := st.ofSample[i]
			if sums[k] > math.MaxUint64-uint64(v) || total > math.MaxUint64-uint64(v) {
				return nil, badRequest("pprof: %s values add up to more than 2^64-1", typ.Type)
			}
			sums[k] += uint64(v)
			total += uint64(v)
		}
		rp.Samples = make([]rules.Sample, 0, len(sums))
		for k, v := range sums {
			if v > 0 || rp.Average {
				rp.Samples = append(rp.Samples, rules.Sample{Stack: st.stacks[k], Value: v})
			}
		}
		out = append(out, rp)
	}
	return out, nil
}
