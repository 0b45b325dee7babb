// Package rules turns profiles into Prometheus counters with Pyroscope's
// metrics-export-rules: a FlameQL selector of applications and tags, a node
// regexp over the stack (or total), and tags kept as labels.
package rules

import (
	"fmt"
	"regexp"
	"strings"
)

// MatchOp is a FlameQL tag matcher operator.
type MatchOp string

// FlameQL operators.
const (
	OpEqual     MatchOp = "="
	OpNotEqual  MatchOp = "!="
	OpRegexp    MatchOp = "=~"
	OpNotRegexp MatchOp = "!~"
)

// Matcher is one tag matcher of a query.
type Matcher struct {
	Key   string
	Op    MatchOp
	Value string
	re    *regexp.Regexp
}

// Query is a parsed FlameQL expression: app.cpu{env="staging",version=~"1\\..*"}.
type Query struct {
	// App is the application name with its profile type ("app.cpu"); empty
	// matches every application.
	App      string
	Matchers []*Matcher
}

var (
	appNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
	tagKeyRE  = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
)

// ParseQuery parses a FlameQL expression; "" matches everything.
func ParseQuery(expr string) (*Query, error) {
	expr = strings.TrimSpace(expr)
	q := &Query{}
	if expr == "" {
		return q, nil
	}
	app, rest, hasBraces := strings.Cut(expr, "{")
	q.App = strings.TrimSpace(app)
	if q.App != "" && !appNameRE.MatchString(q.App) {
		return nil, fmt.Errorf("invalid application name %q", q.App)
	}
	if !hasBraces {
		return q, nil
	}
	if !strings.HasSuffix(strings.TrimSpace(rest), "}") {
		return nil, fmt.Errorf("unclosed { in %q", expr)
	}
	body := strings.TrimSuffix(strings.TrimSpace(rest), "}")
	for _, part := range splitMatchers(body) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		m, err := parseMatcher(part)
		if err != nil {
			return nil, err
		}
		q.Matchers = append(q.Matchers, m)
	}
	return q, nil
}

// splitMatchers splits at commas outside quotes.
func splitMatchers(s string) []string {
	var out []string
	inQuote, escaped, start := false, false, 0
	for i, c := range s {
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func parseMatcher(s string) (*Matcher, error) {
	for _, op := range []MatchOp{OpRegexp, OpNotRegexp, OpNotEqual, OpEqual} {
		i := strings.Index(s, string(op))
		if i <= 0 {
			continue
		}
		// "=" must not be the start of "=~" etc.
		if op == OpEqual && (strings.HasPrefix(s[i:], "=~") || (i > 0 && s[i-1] == '!')) {
			continue
		}
		m := &Matcher{Key: strings.TrimSpace(s[:i]), Op: op}
		if !tagKeyRE.MatchString(m.Key) {
			return nil, fmt.Errorf("invalid tag key %q", m.Key)
		}
		raw := strings.TrimSpace(s[i+len(op):])
		if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
			return nil, fmt.Errorf("tag %s: value %s must be double-quoted", m.Key, raw)
		}
		m.Value = unescape(raw[1 : len(raw)-1])
		if op == OpRegexp || op == OpNotRegexp {
			re, err := regexp.Compile("^(?:" + m.Value + ")$")
			if err != nil {
				return nil, fmt.Errorf("tag %s: %w", m.Key, err)
			}
			m.re = re
		}
		return m, nil
	}
	return nil, fmt.Errorf("invalid matcher %q: want key=\"v\", key!=\"v\", key=~\"re\" or key!~\"re\"", s)
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Matches reports whether a profile of app with tags is selected. As in
// Pyroscope, a negative matcher passes when the tag is absent.
func (q *Query) Matches(app string, tags map[string]string) bool {
	if q.App != "" && q.App != app {
		return false
	}
	for _, m := range q.Matchers {
		v, ok := tags[m.Key]
		switch m.Op {
		case OpEqual:
			if !ok || v != m.Value {
				return false
			}
		case OpNotEqual:
			if ok && v == m.Value {
				return false
			}
		case OpRegexp:
			if !ok || !m.re.MatchString(v) {
				return false
			}
		case OpNotRegexp:
			if ok && m.re.MatchString(v) {
				return false
			}
		}
	}
	return true
}
