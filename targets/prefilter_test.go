package targets

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestCmdlinePrefilter(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		want    []string // nil: no prefilter
		fold    bool
	}{
		{`myapp go$`, []string{"myapp go"}, false},
		{`^/usr/bin/python3? .*manage\.py runserver`, []string{"manage.py runserver"}, false},
		{`worker|master`, []string{"worker", "master"}, false},
		{`(?i)Worker`, []string{"wor"}, true}, // k folds to the Kelvin sign
		{`(ab)+cde`, []string{"cde"}, false},
		{`x{2,}yz`, []string{"yz"}, false},
		{`.*`, nil, false},
		{`a|bcd`, nil, false},                 // one alternative is too short
		{`(foo)?bar*`, []string{"ba"}, false}, // r* is optional
		{`[0-9]+ --serve`, []string{" --serve"}, false},
		{`0123456789012345678901234567890123456789`, []string{"0123456789012345678901234567890"}, false},
	} {
		set, ok := cmdlinePrefilter(tc.pattern)
		if tc.want == nil {
			if ok {
				t.Errorf("%q: prefilter %q, want none", tc.pattern, set.lits)
			}
			continue
		}
		if !ok || strings.Join(set.lits, "|") != strings.Join(tc.want, "|") || set.fold != tc.fold {
			t.Errorf("%q: prefilter %q fold %v (ok %v), want %q fold %v", tc.pattern, set.lits, set.fold, ok, tc.want, tc.fold)
		}
	}
}

func TestCmdlineDFA(t *testing.T) {
	for _, tc := range []struct {
		pattern, args  string // args: NUL-separated, as in memory
		found, decided bool
	}{
		{`myapp go$`, "/tmp/myapp\x00go\x00", true, true},
		{`myapp go$`, "/tmp/myapp\x00gone\x00", true, true}, // a candidate: userspace says no
		{`myapp go$`, "/tmp/myapp\x00stop\x00", false, true},
		{`myapp go$`, "myap\x00p go", false, true},
		{`worker|master`, "gunicorn: mastex\x00workerd", true, true},
		{`(?i)WORKER`, "celery\x00WoRkEr", true, true},
		{`(?i)WORKER`, "celery\x00W0RKER", false, true},
		{`abab`, "aabaabab", true, true}, // failure links
		{`needle`, strings.Repeat("x", cmdlineMax) + "needle", false, false},
		{`needle`, strings.Repeat("x", cmdlineMax-6) + "needle", true, true},
	} {
		set, ok := cmdlinePrefilter(tc.pattern)
		if !ok {
			t.Fatalf("%q: no prefilter", tc.pattern)
		}
		found, decided := set.compile().scan([]byte(tc.args))
		if found != tc.found || decided != tc.decided {
			t.Errorf("%q on %q: found %v decided %v, want %v %v", tc.pattern, tc.args, found, decided, tc.found, tc.decided)
		}
	}
}

// FuzzCmdlinePrefilter: the kernel's prefilter never drops a process the
// regexp selects. The arguments are a local user's bytes: whatever they
// are, a match of the full regexp on the command line userspace reads is
// found (or left undecided, past cmdlineMax) by the automaton.
func FuzzCmdlinePrefilter(f *testing.F) {
	for _, s := range [][2]string{
		{`myapp go$`, "/tmp/myapp\x00go\x00"},
		{`(?i)WORKER|Master`, "x\x00MASTER"},
		{`(?i)sk`, "\u017f\u212a"},
		{`a b`, "a\x00b"},
		{`(?i)éa+bc`, "ÉAABC"},
		{`(?i)Ab|cD`, "aB"},
		{`x{3}yz|(uv)+w`, "uvuvw"},
		{`\x00ab`, "\x00ab"},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, pattern string, args []byte) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		set, ok := cmdlinePrefilter(pattern)
		if !ok {
			return
		}
		// As procfs reads /proc/PID/cmdline.
		line := strings.TrimSpace(string(bytes.ReplaceAll(args, []byte{0}, []byte{' '})))
		if !re.MatchString(line) {
			return
		}
		if found, decided := set.compile().scan(args); decided && !found {
			t.Fatalf("%q matches %q but the prefilter %q (fold %v) drops it", pattern, line, set.lits, set.fold)
		}
	})
}
