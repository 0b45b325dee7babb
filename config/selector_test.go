package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/procfs"
)

func TestSelectors(t *testing.T) {
	self, err := procfs.Read("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sel  Selector
		want bool
	}{
		{"comm", Selector{Comm: self.Comm}, true},
		{"other comm", Selector{Comm: "nope"}, false},
		{"exe path", Selector{Exe: self.Exe}, true},
		{"exe glob", Selector{Exe: filepath.Dir(self.Exe) + "/*"}, true},
		{"cmdline", Selector{Cmdline: `-test\.`}, true},
		{"cgroup", Selector{Cgroup: "^" + self.Cgroup + "$"}, true},
		{"pid", Selector{PIDs: []int{os.Getpid()}}, true},
		{"pid and other comm", Selector{PIDs: []int{os.Getpid()}, Comm: "nope"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.sel.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := tc.sel.Matches(self); got != tc.want {
				t.Fatalf("Matches = %v, want %v (process %+v)", got, tc.want, self)
			}
		})
	}
	for _, bad := range []Selector{{}, {Cmdline: "("}, {Cgroup: "["}, {Exe: "["}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

// TestSelectorYAML: attachments take ebpf-userspace-exporter's
// binary_name or comm; what is not a selector field is an error naming
// its line.
func TestSelectorYAML(t *testing.T) {
	const head = "programs:\n  - name: p\n    metrics:\n      counters: [{name: c, help: h, table: t}]\n    uprobes: {f: g}\n    code: x\n    attachments:\n"
	for _, tc := range []struct {
		name, yaml string
		want       Selector
		wantErr    string
	}{
		{name: "binary_name", yaml: "      binary_name: app\n      pid: [1, 2]\n", want: Selector{Comm: "app", PIDs: []int{1, 2}}},
		{name: "comm", yaml: "      comm: app\n      exe: /usr/bin/*\n      cmdline: x\n      cgroup: y\n", want: Selector{Comm: "app", Exe: "/usr/bin/*", Cmdline: "x", Cgroup: "y"}},
		{name: "both names", yaml: "      binary_name: a\n      comm: b\n", wantErr: "c.yaml:9: binary_name: and comm: both give the command name"},
		{name: "unknown field", yaml: "      binary_name: a\n      bogus: 1\n", wantErr: `c.yaml:9: unknown field "bogus" in attachments`},
		{name: "bad pid", yaml: "      pid: [x]\n", wantErr: "c.yaml:8:"},
		{name: "bad cmdline", yaml: "      cmdline: (\n", wantErr: "c.yaml:8: attachments: cmdline: error parsing regexp"},
		{name: "bad cgroup", yaml: "      cgroup: '['\n", wantErr: "c.yaml:8: attachments: cgroup: error parsing regexp"},
		{name: "bad exe", yaml: "      exe: '/bin/['\n", wantErr: `c.yaml:8: attachments: exe "/bin/[": syntax error`},
		{name: "not a mapping", yaml: "      - a\n", wantErr: "c.yaml:8: attachments must be a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgs, err := Parse("/x/c.yaml", []byte(head+tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cfgs[0].Attachments
			if got == nil || got.String() != tc.want.String() {
				t.Fatalf("attachments %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestSelectorInline: inlined next to other fields (a --profile.config
// target), a Selector decodes by its field tags.
func TestSelectorInline(t *testing.T) {
	type target struct {
		App      string   `yaml:"app"`
		Selector Selector `yaml:",inline"`
	}
	var got target
	if err := strictDecode([]byte("app: a\ncomm: x\nexe: /bin/*\ncmdline: c\ncgroup: g\npid: [3]\n"), &got); err != nil {
		t.Fatal(err)
	}
	if got.App != "a" || got.Selector.String() != "comm=x,exe=/bin/*,cmdline=~c,cgroup=~g,pid=3" {
		t.Errorf("%+v", got)
	}
	if err := strictDecode([]byte("app: a\nbinary_name: x\n"), &got); err == nil || !strings.Contains(err.Error(), "line 2: field binary_name not found") {
		t.Errorf("binary_name in a profile target: %v", err)
	}
}
