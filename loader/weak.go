package loader

import (
	"bytes"
	"debug/elf"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// prepareObject adapts an object written for libbpf to what cilium/ebpf
// loads: weak symbols become global, and libbpf's virtual kconfig
// LINUX_HAS_BPF_COOKIE (read by <bpf/usdt.bpf.h>, unknown to cilium/ebpf)
// is renamed, in place and at the same length, to CONFIG_HAVE_EBPF_JIT,
// which every kernel that runs BPF has set: the value the header then
// reads is 1, "cookies available", which the userspace attacher relies on
// (it sets a cookie on every USDT probe and fails on kernels without).
func prepareObject(obj []byte) []byte {
	const cookie, jit = "LINUX_HAS_BPF_COOKIE\x00", "CONFIG_HAVE_EBPF_JIT\x00"
	if bytes.Contains(obj, []byte(cookie)) {
		obj = bytes.ReplaceAll(obj, []byte(cookie), []byte(jit))
	}
	return globalizeWeak(obj)
}

// globalizeWeak rewrites weak symbols of a BPF object to global ones in a
// copy of the object. libbpf's headers declare some maps and helpers weak
// (<bpf/usdt.bpf.h>: __bpf_usdt_specs, bpf_usdt_arg, ...) so that several
// objects can be linked; libbpf then treats them as global, and cilium/ebpf
// refuses weak bindings. A single object has one definition of each, so
// the rewrite changes nothing else.
func globalizeWeak(obj []byte) []byte {
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil || f.Class != elf.ELFCLASS64 {
		return obj
	}
	defer f.Close()
	sec := f.SectionByType(elf.SHT_SYMTAB)
	if sec == nil || sec.Entsize != elf.Sym64Size || sec.Offset+sec.Size > uint64(len(obj)) {
		return obj
	}
	var out []byte
	for off := sec.Offset; off+elf.Sym64Size <= sec.Offset+sec.Size; off += elf.Sym64Size {
		info := obj[off+4]
		if elf.ST_BIND(info) != elf.STB_WEAK {
			continue
		}
		if out == nil {
			out = append([]byte(nil), obj...)
		}
		out[off+4] = elf.ST_INFO(elf.STB_GLOBAL, elf.ST_TYPE(info))
	}
	if out == nil {
		return obj
	}
	return out
}

// hiddenFuncs lists the functions of an object with hidden visibility.
func hiddenFuncs(obj []byte) map[string]bool {
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return nil
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil
	}
	hidden := map[string]bool{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && elf.ST_VISIBILITY(s.Other) == elf.STV_HIDDEN {
			hidden[s.Name] = true
		}
	}
	return hidden
}

// staticHidden makes hidden global functions static in BTF, as libbpf
// does: the verifier then checks them in their callers' context (where
// their pointer arguments are known) instead of on their own.
// <bpf/usdt.bpf.h>'s bpf_usdt_arg needs it.
func staticHidden(spec *ebpf.CollectionSpec, hidden map[string]bool) {
	if len(hidden) == 0 {
		return
	}
	for _, p := range spec.Programs {
		for i := range p.Instructions {
			if fn := btf.FuncMetadata(&p.Instructions[i]); fn != nil && hidden[fn.Name] && fn.Linkage != btf.StaticFunc {
				fn.Linkage = btf.StaticFunc
			}
		}
	}
}
