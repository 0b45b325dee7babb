package yamlfields

import (
	"errors"
	"testing"

	"go.yaml.in/yaml/v3"
)

type inner struct {
	Name  string `yaml:"name"`
	Value int    `yaml:"value"`
}

type sel struct {
	Comm string `yaml:"comm"`
	PIDs []int  `yaml:"pid"`
}

type outer struct {
	App    string            `yaml:"app"`
	Tags   map[string]string `yaml:"tags"`
	Items  []inner           `yaml:"items"`
	One    *inner            `yaml:"one"`
	Hidden string            `yaml:"-"`
	Sel    sel               `yaml:",inline"`
}

// TestCheck: unknown keys at any depth are named at their own line with
// the keys there are; inlined fields, maps and known keys pass.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line       int
		key, want  string
	}{
		{"all known", "app: a\ntags: {x: y, z: w}\nitems:\n  - {name: n, value: 1}\none: {name: m}\ncomm: c\npid: [1]\n", 0, "", ""},
		{"top level", "app: a\n\n# a comment\nap: b\n", 4, "ap", `unknown field "ap" (want app, tags, items, one, comm, pid)`},
		{"in a list", "items:\n  - name: n\n  - name: m\n    valu: 2\n", 4, "valu", `unknown field "valu" (want name, value)`},
		{"under a pointer", "one:\n  nam: x\n", 2, "nam", `unknown field "nam" (want name, value)`},
		{"a skipped field", "Hidden: x\n", 1, "Hidden", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tc.yaml), &n); err != nil {
				t.Fatal(err)
			}
			err := Check(&n, &outer{})
			if tc.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Line != tc.line || e.Key != tc.key || tc.want != "" && err.Error() != tc.want {
				t.Fatalf("got %v (%+v), want %q at line %d: %s", err, e, tc.key, tc.line, tc.want)
			}
		})
	}
}
