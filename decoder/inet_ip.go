package decoder

import (
	"fmt"
	"net/netip"

	"github.com/probe-exporter/probe_exporter/config"
)

// inetIP turns a 4-byte IPv4 or 16-byte IPv6 address (network order) into
// its text form.
type inetIP struct{}

func newInetIP(config.Decoder, *Env) (Decoder, error) { return inetIP{}, nil }

func (inetIP) Decode(in []byte) ([]byte, error) {
	addr, ok := netip.AddrFromSlice(in)
	if !ok {
		return nil, fmt.Errorf("IP addresses are 4 or 16 bytes, not %d", len(in))
	}
	return addr.Unmap().AppendTo(nil), nil
}
