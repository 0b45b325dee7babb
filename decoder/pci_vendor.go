package decoder

import "github.com/probe-exporter/probe_exporter/config"

// newPCIVendor decodes a PCI vendor id (decimal, after uint) to its name.
func newPCIVendor(_ config.Decoder, env *Env) (Decoder, error) {
	return pciDecoder{db: pciEnv(env), what: "vendor", digits: 4, lookup: func(db *PCIDB, n uint64) (string, bool) {
		s, ok := db.Vendors[uint16(n)]
		return s, ok && n <= 0xffff
	}}, nil
}
