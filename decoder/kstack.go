package decoder

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// kstack turns an array of u64 kernel addresses (a stack from
// bpf_get_stack, ending at the first zero) into symbol names, one per line;
// unknown frames are "??".
type kstack struct{ syms *symtab.Kallsyms }

func newKstack(_ config.Decoder, env *Env) (Decoder, error) {
	if env == nil || env.Kallsyms == nil {
		return nil, errors.New("needs the kernel symbol table (/proc/kallsyms)")
	}
	return kstack{syms: env.Kallsyms}, nil
}

func (d kstack) Decode(in []byte) ([]byte, error) {
	if len(in)%8 != 0 {
		return nil, fmt.Errorf("stacks are arrays of 8-byte addresses; %d bytes is not", len(in))
	}
	var out []byte
	for off := 0; off < len(in); off += 8 {
		addr := binary.NativeEndian.Uint64(in[off:])
		if addr == 0 {
			break
		}
		if off > 0 {
			out = append(out, '\n')
		}
		if name, ok := d.syms.Sym(addr); ok {
			out = append(out, name...)
		} else {
			out = append(out, "??"...)
		}
	}
	return out, nil
}
