package userspace

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/probe-exporter/probe_exporter/targets"
)

// dispatcher is the program attached in place of a user's uprobe or USDT
// program when processes are selected: it looks the current process up in
// the kernel's selection (filled by the exec tracepoint before the new
// image runs) and tail-calls the user's program, unmodified, only for
// selected processes. The tail call keeps the probe's context and BPF
// cookie, so programs written against libbpf's usdt.bpf.h read their
// arguments as if attached directly.
type dispatcher struct {
	prog  *ebpf.Program
	progs *ebpf.Map
}

func (d *dispatcher) Close() error {
	return errors.Join(d.prog.Close(), d.progs.Close())
}

// newDispatcher builds the dispatcher for user. When targetPIDs (the
// optional target_pids map of the object, u32 tgid keys) is given, the
// dispatcher adds the process to it before the call, so programs that
// filter on it themselves see the process from its first probe hit too.
func newDispatcher(user *ebpf.Program, attachType ebpf.AttachType, sel targets.Selected, targetPIDs *ebpf.Map) (*dispatcher, error) {
	progs, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pe_dispatch", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("dispatcher program array: %w", err)
	}
	if targetPIDs != nil && (targetPIDs.KeySize() != 4 || targetPIDs.ValueSize() > 8 || targetPIDs.ValueSize() == 0) {
		targetPIDs = nil
	}
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	if sel.PIDNamespace == (targets.FileKey{}) {
		insns = append(insns,
			asm.FnGetCurrentPidTgid.Call(),
			asm.RSh.Imm(asm.R0, 32),
			asm.StoreMem(asm.RFP, -8, asm.R0, asm.Word),
		)
	} else {
		// The pid in the exporter's namespace, as userspace sees it.
		insns = append(insns,
			asm.LoadImm(asm.R1, int64(sel.PIDNamespace.Dev), asm.DWord),
			asm.LoadImm(asm.R2, int64(sel.PIDNamespace.Ino), asm.DWord),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -16),
			asm.Mov.Imm(asm.R4, 8),
			asm.FnGetNsCurrentPidTgid.Call(),
			asm.JNE.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R0, asm.RFP, -12, asm.Word),
			asm.StoreMem(asm.RFP, -8, asm.R0, asm.Word),
		)
	}
	insns = append(insns,
		asm.StoreImm(asm.RFP, -4, int64(sel.Slot), asm.Word),
		asm.LoadMapPtr(asm.R1, sel.Map.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
	)
	if targetPIDs != nil {
		insns = append(insns,
			asm.LoadMapPtr(asm.R1, targetPIDs.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.FnMapLookupElem.Call(),
			asm.JNE.Imm(asm.R0, 0, "call"),
			asm.Mov.Imm(asm.R3, 1),
			asm.StoreMem(asm.RFP, -24, asm.R3, asm.DWord),
			asm.LoadMapPtr(asm.R1, targetPIDs.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -24),
			asm.Mov.Imm(asm.R4, 1), // BPF_NOEXIST
			asm.FnMapUpdateElem.Call(),
		)
	}
	restore := asm.Mov.Reg(asm.R1, asm.R6)
	if targetPIDs != nil {
		restore = restore.WithSymbol("call")
	}
	insns = append(insns,
		restore,
		asm.LoadMapPtr(asm.R2, progs.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnTailCall.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "pe_dispatch",
		Type:         user.Type(),
		AttachType:   attachType,
		Instructions: insns,
		License:      "GPL",
	})
	if err != nil {
		progs.Close()
		return nil, fmt.Errorf("loading dispatcher: %w", err)
	}
	if err := progs.Put(uint32(0), user); err != nil {
		prog.Close()
		progs.Close()
		return nil, fmt.Errorf("dispatcher cannot tail-call the program: %w", err)
	}
	return &dispatcher{prog: prog, progs: progs}, nil
}
