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
