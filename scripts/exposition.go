package scripts

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseText parses Prometheus text exposition, as scripts print it.
func parseText(text []byte) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*dto.MetricFamily, 0, len(names))
	for _, n := range names {
		out = append(out, fams[n])
	}
	return out, nil
}

// encodeText writes families in the text format with client_golang's encoder.
func encodeText(fams []*dto.MetricFamily) ([]byte, error) {
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", f.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}

// fixEscapes rewrites backslash escapes the text format does not know
// (systemtap's string escaping can produce \t, \x41, \012 in label values)
// so that the backslash itself is escaped; \\ \" and \n are kept.
func fixEscapes(text []byte) []byte {
	if !bytes.Contains(text, []byte{'\\'}) {
		return text
	}
	var out bytes.Buffer
	out.Grow(len(text) + 16)
	inQuote := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '\n':
			inQuote = false
			out.WriteByte(c)
		case c == '"' && (i == 0 || text[i-1] != '\\'):
			inQuote = !inQuote
			out.WriteByte(c)
		case c == '\\' && inQuote:
			if i+1 < len(text) && strings.IndexByte(`\"n`, text[i+1]) >= 0 {
				out.WriteByte(c)
				out.WriteByte(text[i+1])
				i++
				continue
			}
			out.WriteString(`\\`)
		default:
			out.WriteByte(c)
		}
	}
	return out.Bytes()
}

// sanitizeName turns a script's name for a value into a valid metric or
// label name.
func sanitizeName(s string) string {
	if s == "" {
		return "value"
	}
	b := []byte(s)
	for i, c := range b {
		ok := c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}

// validated is validate(out) for the script, done once for an output
// however many requests ask for it at once.
func (sc *script) validated(out []byte) ([]byte, error) {
	sc.valMu.Lock()
	defer sc.valMu.Unlock()
	if sc.valRaw != nil && bytes.Equal(sc.valRaw, out) {
		return sc.valOut, sc.valErr
	}
	v, err := validate(out)
	sc.valRaw, sc.valOut, sc.valErr = bytes.Clone(out), v, err
	return v, err
}

// validate parses script output with Prometheus' text parser (expfmt,
// which rejects bad syntax, unknown or misplaced TYPE lines and samples
// that do not fit their type, naming the line), rejects what a Prometheus
// scrape rejects beyond the grammar (the same series twice), and
// re-encodes it, so that what is served is valid exposition.
func validate(out []byte) ([]byte, error) {
	fams, err := parseText(out)
	if err != nil {
		return nil, err
	}
	if err := checkDuplicates(out); err != nil {
		return nil, err
	}
	return encodeText(fams)
}

// checkDuplicates finds a series (name and label set, in any label order)
// given twice. The text has passed the parser, so its sample lines are
// well formed.
func checkDuplicates(text []byte) error {
	seen := map[string]int{}
	var pairs []string
	for n, line := range bytes.Split(text, []byte{'\n'}) {
		line = bytes.TrimLeft(line, " \t")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, ok := seriesKey(line, pairs[:0])
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			return fmt.Errorf("line %d: duplicate series %s (first on line %d)", n+1, truncate(seriesText(line), 200), first)
		}
		seen[key] = n + 1
	}
	return nil
}

func isNameByte(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// seriesText is the name and labels part of a sample line.
func seriesText(line []byte) []byte {
	if i := bytes.LastIndexByte(line, '}'); i >= 0 {
		return line[:i+1]
	}
	if i := bytes.IndexAny(line, " \t"); i >= 0 {
		return line[:i]
	}
	return line
}

// seriesKey is a canonical form of a sample line's series: its name and
// its label pairs sorted, values unescaped.
func seriesKey(line []byte, pairs []string) (string, bool) {
	// The name ends where a byte that cannot be in it starts: the
	// parser takes "a.1" as the sample a with the value .1.
	i := 0
	for i < len(line) && isNameByte(line[i]) {
		i++
	}
	if i == 0 {
		return "", false
	}
	name := string(line[:i])
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if i >= len(line) || line[i] != '{' {
		return name + "\x00", true // the same key as name{}
	}
	i++
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == ',') {
			i++
		}
		if i >= len(line) {
			return "", false
		}
		if line[i] == '}' {
			break
		}
		eq := bytes.IndexByte(line[i:], '=')
		if eq < 0 {
			return "", false
		}
		lname := string(bytes.TrimSpace(line[i : i+eq]))
		i += eq + 1
		for i < len(line) && line[i] != '"' {
			i++
		}
		i++ // opening quote
		var val strings.Builder
		for i < len(line) && line[i] != '"' {
			if line[i] == '\\' && i+1 < len(line) {
				i++
				switch line[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(line[i])
				}
			} else {
				val.WriteByte(line[i])
			}
			i++
		}
		if i >= len(line) {
			return "", false
		}
		i++ // closing quote
		pairs = append(pairs, lname+"\x00"+val.String())
	}
	sort.Strings(pairs)
	return name + "\x00" + strings.Join(pairs, "\x00"), true
}
