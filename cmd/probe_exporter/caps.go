package main

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/probe-exporter/probe_exporter/internal/caps"
)

// dropCapabilities keeps only the capabilities of --capabilities.keep once
// everything is loaded and attached. Later work (scrapes, reloads of
// configs, attaching to new processes, on-demand scripts) needs only those.
func dropCapabilities(keep string, logger *slog.Logger) error {
	if strings.EqualFold(strings.TrimSpace(keep), "all") {
		return nil
	}
	mask, err := caps.Parse(keep)
	if err != nil {
		return err
	}
	if err := caps.Drop(mask); err != nil {
		if errors.Is(err, caps.ErrNotSupported) {
			logger.Warn("capabilities not dropped", "err", err)
			return nil
		}
		return err
	}
	logger.Info("capabilities dropped", "kept", strings.Join(caps.Names(mask), ","))
	return nil
}
