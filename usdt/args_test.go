package usdt

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		arch, in string
		want     []ArgSpec
		wantErr  string
	}{
		{arch: "amd64", in: "-4@%eax", want: []ArgSpec{{Kind: ArgReg, Reg: "eax", RegOff: 80, Size: 4, Signed: true}}},
		{arch: "amd64", in: "8@%rbx 8@%r15", want: []ArgSpec{{Kind: ArgReg, Reg: "rbx", RegOff: 40, Size: 8}, {Kind: ArgReg, Reg: "r15", RegOff: 0, Size: 8}}},
		{arch: "amd64", in: "-4@112(%rsp)", want: []ArgSpec{{Kind: ArgRegDeref, Reg: "rsp", RegOff: 152, Val: 112, Size: 4, Signed: true}}},
		{arch: "amd64", in: "8@-16(%rbp)", want: []ArgSpec{{Kind: ArgRegDeref, Reg: "rbp", RegOff: 32, Val: -16, Size: 8}}},
		{arch: "amd64", in: "4@(%rdi)", want: []ArgSpec{{Kind: ArgRegDeref, Reg: "rdi", RegOff: 112, Size: 4}}},
		{arch: "amd64", in: "-8@$5", want: []ArgSpec{{Kind: ArgConst, Val: 5, Size: 8, Signed: true}}},
		{arch: "amd64", in: "1@$-1", want: []ArgSpec{{Kind: ArgConst, Val: -1, Size: 1}}},
		{arch: "amd64", in: "2@%r12w", want: []ArgSpec{{Kind: ArgReg, Reg: "r12w", RegOff: 24, Size: 2}}},
		{arch: "amd64", in: "", want: nil},
		{arch: "amd64", in: "4@%xmm0", wantErr: "unknown register"},
		{arch: "amd64", in: "-4@-4(%rbp,%rax,4)", wantErr: "indexed memory operand"},
		{arch: "amd64", in: "3@%eax", wantErr: "size 3"},
		{arch: "amd64", in: "%eax", wantErr: "no size prefix"},
		{arch: "arm64", in: "-4@x0", want: []ArgSpec{{Kind: ArgReg, Reg: "x0", RegOff: 0, Size: 4, Signed: true}}},
		{arch: "arm64", in: "8@[sp, 16] 4@w3", want: []ArgSpec{{Kind: ArgRegDeref, Reg: "sp", RegOff: 248, Val: 16, Size: 8}, {Kind: ArgReg, Reg: "w3", RegOff: 24, Size: 4}}},
		{arch: "arm64", in: "4@[x1]", want: []ArgSpec{{Kind: ArgRegDeref, Reg: "x1", RegOff: 8, Size: 4}}},
		{arch: "arm64", in: "-8@[x29, -8]", want: []ArgSpec{{Kind: ArgRegDeref, Reg: "x29", RegOff: 232, Val: -8, Size: 8, Signed: true}}},
		{arch: "arm64", in: "4@5", want: []ArgSpec{{Kind: ArgConst, Val: 5, Size: 4}}},
		{arch: "arm64", in: "4@v0", wantErr: "unknown register"},
		{arch: "riscv64", in: "4@a0", wantErr: "not supported"},
		{arch: "amd64", in: strings.Repeat("8@%rax ", 13), wantErr: "at most 12"},
	} {
		t.Run(tc.arch+" "+tc.in, func(t *testing.T) {
			got, err := ParseArgs(tc.in, tc.arch)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestEncodeSpec(t *testing.T) {
	args, err := ParseArgs("-4@%eax 8@-16(%rbp) 2@$7", "amd64")
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeSpec(args, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != SpecSize || SpecSize != 208 {
		t.Fatalf("spec is %d bytes, libbpf's is 208", len(b))
	}
	bo := binary.NativeEndian
	type arg struct {
		val      uint64
		typ      uint32
		regOff   uint16
		signed   byte
		bitshift byte
	}
	read := func(i int) arg {
		o := i * 16
		return arg{bo.Uint64(b[o:]), bo.Uint32(b[o+8:]), bo.Uint16(b[o+12:]), b[o+14], b[o+15]}
	}
	want := []arg{{0, 1, 80, 1, 32}, {uint64(0xfffffffffffffff0), 2, 32, 0, 0}, {7, 0, 0, 0, 48}}
	for i, w := range want {
		if got := read(i); got != w {
			t.Errorf("arg %d = %+v, want %+v", i, got, w)
		}
	}
	if got := bo.Uint64(b[192:]); got != 42 {
		t.Errorf("cookie %d", got)
	}
	if got := bo.Uint16(b[200:]); got != 3 {
		t.Errorf("arg count %d", got)
	}
}

func TestPythonNotes(t *testing.T) {
	const python = "/usr/bin/python3.11"
	notes, err := ReadNotes(python)
	if err != nil {
		t.Skipf("%s: %v", python, err)
	}
	found := map[string]Note{}
	for _, n := range notes {
		found[n.Provider+":"+n.Name] = n
	}
	for _, name := range []string{"python:gc__start", "python:gc__done", "python:function__entry"} {
		n, ok := found[name]
		if !ok {
			t.Errorf("%s not found", name)
			continue
		}
		if n.Semaphore == 0 || n.SemaphoreOffset == 0 || n.LocationOffset == 0 {
			t.Errorf("%s: %+v: want a semaphore and file offsets", name, n)
		}
		if _, err := ParseArgs(n.Args, "amd64"); err != nil {
			t.Errorf("%s args %q: %v", name, n.Args, err)
		}
	}
	probes, err := Probes(python)
	if err != nil || len(probes) < 8 {
		t.Fatalf("probes %v %v", probes, err)
	}
	if _, err := ReadNotes("/nonexistent"); err == nil {
		t.Error("missing file read")
	}
}
