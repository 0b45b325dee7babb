//go:build !amd64 && !arm64

package profile

// profileObject is empty where no object is built (include/regs.bpf.h
// knows x86-64's and arm64's registers only): New says so.
var profileObject []byte

// pythonFrames: no program, no Python frames.
const pythonFrames = false
