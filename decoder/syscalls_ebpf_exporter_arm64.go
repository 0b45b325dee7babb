//go:build arm64

package decoder

// ebpfExporterSyscallNames are the names ebpf_exporter's syscall decoder
// gives where they differ from the kernel's (its table comes from strace's
// syscallent.h: "futex_time64" for futex, "exit" for exit_group, "pread"
// for pread64, ...). With --metrics.prefix=ebpf_exporter they replace the
// kernel's names so that dashboards built on ebpf_exporter keep matching;
// numbers missing here keep the kernel's name.
var ebpfExporterSyscallNames = map[uint64]string{
	4:   "io_getevents_time64",
	6:   "setxattr",
	9:   "getxattr",
	12:  "listxattr",
	15:  "removexattr",
	41:  "pivotroot",
	67:  "pread",
	68:  "pwrite",
	71:  "sendfile64",
	72:  "pselect6_time64",
	73:  "ppoll_time64",
	86:  "timerfd_settime64",
	87:  "timerfd_gettime64",
	88:  "utimensat_time64",
	94:  "exit",
	98:  "futex_time64",
	101: "nanosleep_time64",
	108: "timer_gettime64",
	110: "timer_settime64",
	112: "clock_settime64",
	113: "clock_gettime64",
	114: "clock_getres_time64",
	115: "clock_nanosleep_time64",
	127: "sched_rr_get_interval_time64",
	137: "rt_sigtimedwait_time64",
	171: "adjtimex64",
	182: "mq_timedsend_time64",
	183: "mq_timedreceive_time64",
	192: "semtimedop_time64",
	243: "recvmmsg_time64",
	266: "clock_adjtime64",
	292: "io_pgetevents_time64",
}
