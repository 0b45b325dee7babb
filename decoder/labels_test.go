package decoder

import (
	"errors"
	"reflect"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestLabels(t *testing.T) {
	labels := []config.Label{
		{Name: "comm", Size: 8, Decoders: []config.Decoder{{Name: "string"}}},
		{Name: "op", Size: 1, Padding: 7, Decoders: []config.Decoder{{Name: "uint"}, {Name: "static_map", StaticMap: map[string]string{"1": "read"}}}},
		{Name: "bucket", Size: 8, Decoders: []config.Decoder{{Name: "uint"}}},
	}
	l, err := NewLabels(labels, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.KeySize() != 24 || !reflect.DeepEqual(l.Names(), []string{"comm", "op", "bucket"}) {
		t.Fatalf("size %d names %v", l.KeySize(), l.Names())
	}
	key := append(append([]byte("bash\x00\x00\x00\x00"), 1, 9, 9, 9, 9, 9, 9, 9), le64(3)...)
	got, err := l.Decode(key)
	if err != nil || !reflect.DeepEqual(got, []string{"bash", "read", "3"}) {
		t.Fatalf("Decode = %v, %v", got, err)
	}
	if _, err := l.Decode(key[:10]); err == nil {
		t.Fatal("short key decoded")
	}
	for _, tc := range []struct {
		name  string
		label config.Label
		want  string
	}{
		{"no size", config.Label{Name: "x", Decoders: []config.Decoder{{Name: "uint"}}}, `label "x": size is zero`},
		{"no decoders", config.Label{Name: "x", Size: 4}, `label "x": no decoders`},
		{"unknown decoder", config.Label{Name: "x", Size: 4, Decoders: []config.Decoder{{Name: "nope"}}}, `label "x": unknown decoder "nope"`},
	} {
		if _, err := NewLabels([]config.Label{tc.label}, nil); err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	skip, err := NewLabels([]config.Label{{Name: "c", Size: 4, Decoders: []config.Decoder{{Name: "string"}, {Name: "regexp", Regexps: []string{"^x"}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := skip.Decode([]byte("abc\x00")); !errors.Is(err, ErrSkipLabelSet) {
		t.Fatalf("regexp miss: %v", err)
	}
}

func BenchmarkLabelsDecode(b *testing.B) {
	l, err := NewLabels([]config.Label{
		{Name: "comm", Size: 16, Decoders: []config.Decoder{{Name: "string"}}},
		{Name: "op", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}, {Name: "static_map", StaticMap: map[string]string{"1": "read", "2": "write"}}}},
		{Name: "dev", Size: 8, Decoders: []config.Decoder{{Name: "uint"}}},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	key := append(append([]byte("systemd-journal\x00"), 2, 0, 0, 0, 0, 0, 0, 0), le64(8)...)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := l.Decode(key); err != nil {
			b.Fatal(err)
		}
	}
}
