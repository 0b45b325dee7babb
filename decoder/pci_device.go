package decoder

import "github.com/probe-exporter/probe_exporter/config"

// newPCIDevice decodes vendor<<16 | device (decimal, after uint) to the
// device name.
func newPCIDevice(_ config.Decoder, env *Env) (Decoder, error) {
	return pciDecoder{db: pciEnv(env), what: "device", digits: 8, lookup: func(db *PCIDB, n uint64) (string, bool) {
		s, ok := db.Devices[uint32(n)]
		return s, ok && n <= 0xffffffff
	}}, nil
}
