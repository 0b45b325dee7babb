package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestStaticMap(t *testing.T) {
	m := map[string]string{"1": "read", "2": "write"}
	runDecodeCases(t, config.Decoder{Name: "static_map", StaticMap: m}, nil, []decodeCase{
		{name: "known", in: []byte("1"), want: "read"},
		{name: "unknown", in: []byte("3"), want: "unknown:3"},
	})
	runDecodeCases(t, config.Decoder{Name: "static_map", StaticMap: m, AllowUnknown: true}, nil, []decodeCase{
		{name: "known", in: []byte("2"), want: "write"},
		{name: "allowed unknown", in: []byte("3"), want: "3"},
	})
	if _, err := New(config.Decoder{Name: "static_map"}, nil); err == nil {
		t.Error("an empty static_map should be an error")
	}
}
