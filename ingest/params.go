package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

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
	// Pyroscope's Go SDK sends sampleRate=0 with the profiles that have
	// no rate (goroutines, mutex, block): 0, as an absent rate, is the
	// default, as Pyroscope reads it.
	if v := q.Get("sampleRate"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, fmt.Errorf("sampleRate %q: want a non-negative integer", v)
		}
		if n > 0 {
			p.sampleRate = uint32(n)
		}
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
