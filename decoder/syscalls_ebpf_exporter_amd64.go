//go:build amd64

package decoder

// ebpfExporterSyscallNames are the names ebpf_exporter's syscall decoder
// gives where they differ from the kernel's (its table comes from strace's
// syscallent.h: "futex_time64" for futex, "exit" for exit_group, "pread"
// for pread64, ...). With --metrics.prefix=ebpf_exporter they replace the
// kernel's names so that dashboards built on ebpf_exporter keep matching;
// numbers missing here keep the kernel's name.
var ebpfExporterSyscallNames = map[uint64]string{
	7:   "poll_time64",
	17:  "pread",
	18:  "pwrite",
	35:  "nanosleep_time64",
	40:  "sendfile64",
	94:  "chown",
	128: "rt_sigtimedwait_time64",
	148: "sched_rr_get_interval_time64",
	155: "pivotroot",
	156: "sysctl",
	159: "adjtimex64",
	189: "setxattr",
	192: "getxattr",
	195: "listxattr",
	198: "removexattr",
	202: "futex_time64",
	208: "io_getevents_time64",
	214: "printargs",
	215: "printargs",
	220: "semtimedop_time64",
	223: "timer_settime64",
	224: "timer_gettime64",
	227: "clock_settime64",
	228: "clock_gettime64",
	229: "clock_getres_time64",
	230: "clock_nanosleep_time64",
	231: "exit",
	242: "mq_timedsend_time64",
	243: "mq_timedreceive_time64",
	270: "pselect6_time64",
	271: "ppoll_time64",
	280: "utimensat_time64",
	286: "timerfd_settime64",
	287: "timerfd_gettime64",
	299: "recvmmsg_time64",
	305: "clock_adjtime64",
	333: "io_pgetevents_time64",
}
