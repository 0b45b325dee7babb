package config

import "testing"

// FuzzParse: the config parser never panics, whatever the YAML.
func FuzzParse(f *testing.F) {
	for _, s := range []string{biolatency, cachestat, gunicorn, "metrics: {counters: [{name: x, help: y}]}", "programs: []", "- programs: [{name: a}]", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfgs, err := Parse("fuzz.yaml", data)
		if err == nil && len(cfgs) == 0 {
			t.Fatal("no error and no config")
		}
	})
}
