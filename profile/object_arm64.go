package profile

import _ "embed"

// profileObject is the profiler's BPF program built for arm64
// (-D__TARGET_ARCH_arm64: it reads user_pt_regs' pc, sp and x29).
//
//go:embed profile_arm64.bpf.o
var profileObject []byte
