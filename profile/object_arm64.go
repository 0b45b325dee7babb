package profile

import _ "embed"

// profileObject is the profiler's BPF program built for arm64
// (-D__TARGET_ARCH_arm64: it reads user_pt_regs' pc, sp and x29).
//
//go:embed profile_arm64.bpf.o
var profileObject []byte

// pythonFrames tells whether the program walks CPython's frames here: not
// on arm64, where pthread_self() (the thread id CPython records) is not
// the thread pointer register (TPIDR_EL0) but sits below it by glibc's
// struct pthread, whose size varies by glibc version. Interpreters are
// counted as unsupported and their stacks stay native.
const pythonFrames = false
