package ingest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/probe-exporter/probe_exporter/rules"
)

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
