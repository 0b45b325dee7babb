package decoder

import "github.com/probe-exporter/probe_exporter/config"

// newPCIClass decodes a PCI class id (decimal, after uint) to its name.
func newPCIClass(_ config.Decoder, env *Env) (Decoder, error) {
	return pciDecoder{db: pciEnv(env), what: "class", digits: 2, lookup: func(db *PCIDB, n uint64) (string, bool) {
		s, ok := db.Classes[uint8(n)]
		return s, ok && n <= 0xff
	}}, nil
}
