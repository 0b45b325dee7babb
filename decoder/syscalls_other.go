//go:build !amd64 && !arm64

package decoder

// syscallNames is empty where no table is built in: numbers stay numbers.
var syscallNames = map[uint64]string{}

// ebpfExporterSyscallNames is empty too.
var ebpfExporterSyscallNames = map[uint64]string{}
