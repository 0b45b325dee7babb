package scripts

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// FuzzBpftraceJSON: bpftrace output lines never panic the converter, and
// what converts encodes as valid exposition.
func FuzzBpftraceJSON(f *testing.F) {
	for _, s := range []string{
		`{"type": "map", "data": {"@c": 25}}`,
		`{"type": "map", "data": {"@m": {"1,x": 25}}}`,
		`{"type": "hist", "data": {"@h": [{"min": 4, "max": 7, "count": 25}]}}`,
		`{"type": "stats", "data": {"@s": {"count": 25, "average": 5, "total": 125}}}`,
		`{"type": "lhist", "data": {"@l": [{"max": -1, "count": 1}, {"min": 10, "count": 2}]}}`,
		// Values that are not numbers: left out, not failing the dump.
		`{"type": "map", "data": {"@reason": {"12": "background"}}}`,
		`{"type": "map", "data": {"@t": [1,"b"]}}`,
		`{"type": "map", "data": {"@k": {"1": "\n  bpf_prog+6\n"}}}`,
		`{"type": "hist", "data": {"@h": {"x": 1}}}`,
		`{"type": "stats", "data": {"@s": {"a": "b"}}}`,
	} {
		f.Add([]byte(s))
	}
	s := inferBpftrace("k:f { @c = count(); }")
	f.Fuzz(func(t *testing.T, line []byte) {
		fams, _, err := bpftraceFamilies([][]byte{line}, s)
		if err != nil {
			return
		}
		if _, err := encodeText(fams); err != nil {
			t.Skip(err) // e.g. duplicate label names from a crafted key
		}
	})
}

// FuzzOneShotOutput: whatever a one-shot executable prints (the bytes of
// a run that then exits 0) is kept within --scripts.max-output, never
// panics the reader or the validation, and what validates is served as
// exposition that validates again unchanged.
func FuzzOneShotOutput(f *testing.F) {
	for _, s := range []string{
		"oneshot_value 42\n",
		"# TYPE v gauge\nv{a=\"b\"} 1\n# EOF\n",
		"a 1\n# EOF\nb 2",
		"",
		"printf_no_newline 3",
		"x{a=\"\\q\"} 1\n",
		"dup 1\ndup 2\n",
		"# HELP updates_pending p\n# TYPE updates_pending gauge\npacman_updates_pending 0\n",
		"tw_cli_cli_error{message=\"Error trying to run\"}\t1\n",
		strings.Repeat("long", 2000) + " 1\n# EOF\nafter 1\n",
	} {
		f.Add([]byte(s))
	}
	const max = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := &script{name: "f.sh", kind: KindExec, opts: &Options{MaxOutput: max}, logger: slog.New(slog.DiscardHandler),
			state: StateRunning, stderr: &rateLimited{burst: 1}}
		ready := make(chan struct{})
		sc.ready = ready
		sc.readStdout(bytes.NewReader(data), ready, nil)
		sc.mu.Lock()
		sc.exitedWith(nil, nil, &stderrLines{})
		r := sc.result
		sc.mu.Unlock()
		if r == nil {
			t.Fatal("a run that exited 0 left no result")
		}
		if r.err != nil {
			return
		}
		if len(r.out) > max {
			t.Fatalf("kept %d bytes, over the %d-byte limit", len(r.out), max)
		}
		out, err := validate(r.out)
		if err != nil {
			return
		}
		again, err := validate(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("served text does not validate unchanged: %v\n%q\n%q", err, out, again)
		}
	})
}
