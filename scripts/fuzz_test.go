package scripts

import "testing"

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
