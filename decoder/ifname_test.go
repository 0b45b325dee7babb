package decoder

import (
	"errors"
	"net"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestIfname(t *testing.T) {
	env := &Env{Ifnames: func(i int) (string, error) {
		if i == 2 {
			return "eth0", nil
		}
		return "", errors.New("no such interface")
	}}
	runDecodeCases(t, config.Decoder{Name: "ifname"}, env, []decodeCase{
		{name: "known", in: le32(2), want: "eth0"},
		{name: "gone", in: le32(99), want: "unknown:99"},
	})
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no loopback interface")
	}
	runDecodeCases(t, config.Decoder{Name: "ifname"}, nil, []decodeCase{
		{name: "host lo", in: le32(uint32(lo.Index)), want: "lo"},
	})
}
