package decoder

import "github.com/probe-exporter/probe_exporter/config"

// newPCISubclass decodes class<<8 | subclass (decimal, after uint) to the
// subclass name.
func newPCISubclass(_ config.Decoder, env *Env) (Decoder, error) {
	return pciDecoder{db: pciEnv(env), what: "subclass", digits: 4, lookup: func(db *PCIDB, n uint64) (string, bool) {
		s, ok := db.Subclasses[uint16(n)]
		return s, ok && n <= 0xffff
	}}, nil
}
