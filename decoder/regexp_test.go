package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestRegexp(t *testing.T) {
	conf := config.Decoder{Name: "regexp", Regexps: []string{"^systemd-journal$", "^syslog-ng$"}}
	runDecodeCases(t, conf, nil, []decodeCase{
		{name: "first", in: []byte("systemd-journal"), want: "systemd-journal"},
		{name: "second", in: []byte("syslog-ng"), want: "syslog-ng"},
		{name: "dropped", in: []byte("bash"), wantErr: "skip"},
	})
	// The ebpf_exporter v1 spelling "regexp:" works too.
	runDecodeCases(t, config.Decoder{Name: "regexp", Regexp: []string{"^a"}}, nil, []decodeCase{
		{name: "v1 spelling", in: []byte("abc"), want: "abc"},
	})
	for _, bad := range []config.Decoder{{Name: "regexp"}, {Name: "regexp", Regexps: []string{"("}}} {
		if _, err := New(bad, nil); err == nil {
			t.Errorf("New(%+v) should fail", bad)
		}
	}
}
