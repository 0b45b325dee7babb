package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// TracefsPath is where tracefs is expected and mounted when absent.
const TracefsPath = "/sys/kernel/tracing"

// PrepareHost makes the host ready for loading programs: it lifts the
// memlock limit on kernels that still charge BPF memory to it (failure is
// not fatal: kernels >= 5.11 account BPF memory to the memory cgroup) and
// mounts tracefs when it is absent, which tracepoint and kprobe attachment
// need.
func PrepareHost(logger *slog.Logger) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		logger.Debug("could not raise RLIMIT_MEMLOCK; fine on kernels with memcg accounting", "err", err)
	}
	return EnsureTracefs(logger)
}

// EnsureTracefs mounts tracefs at TracefsPath unless it (or debugfs's
// tracing directory) is already there.
func EnsureTracefs(logger *slog.Logger) error {
	for _, p := range []string{TracefsPath + "/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
	}
	if err := unix.Mount("tracefs", TracefsPath, "tracefs", 0, ""); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("tracefs is not mounted and mounting it at %s was refused (%w): tracepoint programs will fail; mount it or run with CAP_SYS_ADMIN", TracefsPath, err)
		}
		return fmt.Errorf("mounting tracefs at %s: %w", TracefsPath, err)
	}
	logger.Info("mounted tracefs", "path", TracefsPath)
	return nil
}
