package decoder

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// ksym turns a u64 kernel address into the name of the function holding
// it, or "unknown_addr:0x...".
type ksym struct{ syms *symtab.Kallsyms }

func newKsym(_ config.Decoder, env *Env) (Decoder, error) {
	if env == nil || env.Kallsyms == nil {
		return nil, errors.New("needs the kernel symbol table (/proc/kallsyms)")
	}
	return ksym{syms: env.Kallsyms}, nil
}

func (d ksym) Decode(in []byte) ([]byte, error) {
	if len(in) != 8 {
		return nil, fmt.Errorf("kernel addresses are 8 bytes, not %d", len(in))
	}
	addr := binary.NativeEndian.Uint64(in)
	if name, ok := d.syms.Sym(addr); ok {
		return []byte(name), nil
	}
	return fmt.Appendf(nil, "unknown_addr:0x%x", addr), nil
}
