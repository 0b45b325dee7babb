package usdt

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// ArgKind is where an argument's value is, as libbpf's
// enum __bpf_usdt_arg_type says.
type ArgKind uint32

// Argument kinds (libbpf's BPF_USDT_ARG_*).
const (
	ArgConst ArgKind = iota
	ArgReg
	ArgRegDeref
)

// ArgSpec is one parsed argument: a constant, a register, or memory at a
// register plus an offset.
type ArgSpec struct {
	Kind ArgKind
	// Reg is the register name as written ("eax", "rbp", "x0", "sp").
	Reg string
	// RegOff is the register's offset in struct pt_regs.
	RegOff int16
	// Val is the constant (ArgConst) or the offset from the register
	// (ArgRegDeref).
	Val int64
	// Size is the argument's size in bytes: 1, 2, 4 or 8.
	Size   int
	Signed bool
}

// MaxArgs is libbpf's BPF_USDT_MAX_ARG_CNT.
const MaxArgs = 12

// ParseArgs parses a note's argument string for arch ("amd64" or "arm64").
func ParseArgs(s, arch string) ([]ArgSpec, error) {
	fields := splitArgs(s, arch)
	if len(fields) > MaxArgs {
		return nil, fmt.Errorf("%d arguments: libbpf supports at most %d", len(fields), MaxArgs)
	}
	var out []ArgSpec
	for _, f := range fields {
		var a ArgSpec
		var err error
		switch arch {
		case "amd64":
			a, err = parseX86(f)
		case "arm64":
			a, err = parseArm64(f)
		default:
			err = fmt.Errorf("architecture %q is not supported", arch)
		}
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", f, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// splitArgs splits at spaces, except inside brackets (arm64's "[sp, 16]").
func splitArgs(s, arch string) []string {
	var out []string
	depth := 0
	start := -1
	for i, c := range s {
		switch {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == ' ' && depth == 0:
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// sizeOf parses the "N@" prefix: the size, negative for signed.
func sizeOf(f string) (size int, signed bool, rest string, err error) {
	n, rest, ok := strings.Cut(f, "@")
	if !ok {
		return 0, false, "", fmt.Errorf("no size prefix N@")
	}
	v, err := strconv.Atoi(n)
	if err != nil {
		return 0, false, "", fmt.Errorf("size %q", n)
	}
	signed = v < 0
	if signed {
		v = -v
	}
	switch v {
	case 1, 2, 4, 8:
	default:
		return 0, false, "", fmt.Errorf("size %d is not 1, 2, 4 or 8", v)
	}
	return v, signed, rest, nil
}

// x86Regs maps register names to offsets in x86_64's struct pt_regs.
var x86Regs = buildX86Regs()

func buildX86Regs() map[string]int16 {
	regs := map[string]int16{}
	for off, names := range map[int16][]string{
		0: {"r15", "r15d", "r15w", "r15b"}, 8: {"r14", "r14d", "r14w", "r14b"},
		16: {"r13", "r13d", "r13w", "r13b"}, 24: {"r12", "r12d", "r12w", "r12b"},
		32: {"rbp", "ebp", "bp", "bpl"}, 40: {"rbx", "ebx", "bx", "bl", "bh"},
		48: {"r11", "r11d", "r11w", "r11b"}, 56: {"r10", "r10d", "r10w", "r10b"},
		64: {"r9", "r9d", "r9w", "r9b"}, 72: {"r8", "r8d", "r8w", "r8b"},
		80: {"rax", "eax", "ax", "al", "ah"}, 88: {"rcx", "ecx", "cx", "cl", "ch"},
		96: {"rdx", "edx", "dx", "dl", "dh"}, 104: {"rsi", "esi", "si", "sil"},
		112: {"rdi", "edi", "di", "dil"}, 128: {"rip", "eip"}, 152: {"rsp", "esp", "sp", "spl"},
	} {
		for _, n := range names {
			regs[n] = off
		}
	}
	return regs
}

func parseX86(f string) (ArgSpec, error) {
	size, signed, rest, err := sizeOf(f)
	if err != nil {
		return ArgSpec{}, err
	}
	a := ArgSpec{Size: size, Signed: signed}
	switch {
	case strings.HasPrefix(rest, "$"):
		a.Kind = ArgConst
		a.Val, err = strconv.ParseInt(rest[1:], 0, 64)
		if err != nil {
			return a, fmt.Errorf("constant %q", rest)
		}
	case strings.HasPrefix(rest, "%"):
		a.Kind = ArgReg
		a.Reg = rest[1:]
	case strings.HasSuffix(rest, ")"):
		a.Kind = ArgRegDeref
		off, reg, ok := strings.Cut(strings.TrimSuffix(rest, ")"), "(")
		if !ok || !strings.HasPrefix(reg, "%") {
			return a, fmt.Errorf("memory operand %q", rest)
		}
		if strings.Contains(reg, ",") {
			return a, fmt.Errorf("indexed memory operand %q is not supported (libbpf neither)", rest)
		}
		a.Reg = reg[1:]
		if off != "" {
			if a.Val, err = strconv.ParseInt(off, 0, 64); err != nil {
				return a, fmt.Errorf("offset %q", off)
			}
		}
	default:
		return a, fmt.Errorf("unknown operand %q", rest)
	}
	if a.Kind != ArgConst {
		off, ok := x86Regs[a.Reg]
		if !ok {
			return a, fmt.Errorf("unknown register %q", a.Reg)
		}
		a.RegOff = off
	}
	return a, nil
}

func arm64RegOff(r string) (int16, bool) {
	switch r {
	case "sp":
		return 31 * 8, true
	case "pc":
		return 32 * 8, true
	}
	if len(r) >= 2 && (r[0] == 'x' || r[0] == 'w') {
		n, err := strconv.Atoi(r[1:])
		if err == nil && n >= 0 && n <= 30 {
			return int16(n * 8), true
		}
	}
	return 0, false
}

func parseArm64(f string) (ArgSpec, error) {
	size, signed, rest, err := sizeOf(f)
	if err != nil {
		return ArgSpec{}, err
	}
	a := ArgSpec{Size: size, Signed: signed}
	switch {
	case strings.HasPrefix(rest, "["):
		a.Kind = ArgRegDeref
		inner := strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")
		reg, off, hasOff := strings.Cut(inner, ",")
		a.Reg = strings.TrimSpace(reg)
		if hasOff {
			if a.Val, err = strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(off), "#"), 0, 64); err != nil {
				return a, fmt.Errorf("offset %q", off)
			}
		}
	case len(rest) > 0 && (rest[0] == '-' || rest[0] >= '0' && rest[0] <= '9'):
		a.Kind = ArgConst
		if a.Val, err = strconv.ParseInt(rest, 0, 64); err != nil {
			return a, fmt.Errorf("constant %q", rest)
		}
	default:
		a.Kind = ArgReg
		a.Reg = rest
	}
	if a.Kind != ArgConst {
		off, ok := arm64RegOff(a.Reg)
		if !ok {
			return a, fmt.Errorf("unknown register %q", a.Reg)
		}
		a.RegOff = off
	}
	return a, nil
}

// SpecSize is the size of libbpf's struct __bpf_usdt_spec.
const SpecSize = MaxArgs*16 + 8 + 8

// EncodeSpec lays out libbpf's struct __bpf_usdt_spec for args and cookie
// in host byte order:
//
//	struct __bpf_usdt_arg_spec { u64 val_off; u32 arg_type; s16 reg_off; bool arg_signed; s8 arg_bitshift; } args[12];
//	u64 usdt_cookie; s16 arg_cnt;
func EncodeSpec(args []ArgSpec, cookie uint64) ([]byte, error) {
	if len(args) > MaxArgs {
		return nil, fmt.Errorf("%d arguments: at most %d", len(args), MaxArgs)
	}
	b := make([]byte, SpecSize)
	bo := binary.NativeEndian
	for i, a := range args {
		o := i * 16
		bo.PutUint64(b[o:], uint64(a.Val))
		bo.PutUint32(b[o+8:], uint32(a.Kind))
		bo.PutUint16(b[o+12:], uint16(a.RegOff))
		if a.Signed {
			b[o+14] = 1
		}
		b[o+15] = byte(64 - a.Size*8)
	}
	bo.PutUint64(b[MaxArgs*16:], cookie)
	bo.PutUint16(b[MaxArgs*16+8:], uint16(len(args)))
	return b, nil
}
