package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"time"
)

// compatEbpfExporter is the mode in which the binary stands in for
// cloudflare's ebpf_exporter v2: invoked under that name (a symlink or a
// copy) or with --compat=ebpf_exporter, it takes ebpf_exporter's defaults
// (listen on :9435, its metric names, its tracing endpoint, its
// --config.check exit code, its own metrics for configs that failed) so
// that Prometheus, dashboards and alerts built on it need no change.
const compatEbpfExporter = "ebpf_exporter"

// ebpfExporterListen is ebpf_exporter's default --web.listen-address.
const ebpfExporterListen = ":9435"

// compatMode is the compatibility mode asked for: by the basename of
// argv[0], or by --compat on the command line (the last one wins, as
// kingpin takes the last value of a flag). It is read before the flags are
// parsed because it changes their defaults; kingpin then validates it.
func compatMode(argv0 string, args []string) string {
	mode := ""
	if strings.TrimSuffix(filepath.Base(argv0), ".exe") == compatEbpfExporter {
		mode = compatEbpfExporter
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		switch {
		case strings.HasPrefix(a, "--compat="):
			mode = strings.TrimPrefix(a, "--compat=")
		case a == "--compat" && i+1 < len(args):
			mode = args[i+1]
			i++
		}
	}
	if mode != compatEbpfExporter {
		return ""
	}
	return mode
}

// noTimestamps drops the time of every record, for --log.no-timestamps
// (ebpf_exporter's flag, for journald which stamps lines itself): slog's
// handlers leave out the time of a record whose time is zero.
type noTimestamps struct{ slog.Handler }

func (h noTimestamps) Handle(ctx context.Context, r slog.Record) error {
	r.Time = time.Time{}
	return h.Handler.Handle(ctx, r)
}

func (h noTimestamps) WithAttrs(attrs []slog.Attr) slog.Handler {
	return noTimestamps{h.Handler.WithAttrs(attrs)}
}

func (h noTimestamps) WithGroup(name string) slog.Handler {
	return noTimestamps{h.Handler.WithGroup(name)}
}
