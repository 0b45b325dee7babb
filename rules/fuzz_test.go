package rules

import "testing"

// FuzzParseQuery: FlameQL parsing never panics; what parses can match.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "app.cpu", `{env="prod"}`, `app.cpu{env="staging",version=~"1\\..*"}`, `{a!="b",c!~"d"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			return
		}
		q.Matches("app.cpu", map[string]string{"env": "prod"})
	})
}
