package profile

import _ "embed"

// profileObject is the profiler's BPF program built for x86-64
// (-D__TARGET_ARCH_x86: it reads struct pt_regs' ip, sp and bp).
//
//go:embed profile_x86.bpf.o
var profileObject []byte

// pythonFrames tells whether the program walks CPython's frames here: it
// finds a thread's state by the thread pointer CPython records as its
// thread id (pthread_self(), x86-64's fsbase).
const pythonFrames = true
