// Package targets follows the processes a config.Selector chooses (by
// command name, executable, command line, cgroup or pid) as they start and
// exit, driven by exec and exit tracepoints, with /proc scans to begin with
// and as a fallback.
package targets

import "github.com/probe-exporter/probe_exporter/internal/procfs"

// Process is what /proc tells about one process.
type Process = procfs.Process
