package profile

import _ "embed"

// profileObject is the profiler's BPF program built for x86-64
// (-D__TARGET_ARCH_x86: it reads struct pt_regs' ip, sp and bp).
//
//go:embed profile_x86.bpf.o
var profileObject []byte
