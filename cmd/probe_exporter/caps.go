package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"strconv"
	"strings"

	"github.com/probe-exporter/probe_exporter/internal/caps"
)

// dropCapabilities keeps only the capabilities of --capabilities.keep once
// everything is loaded and attached. Later work (scrapes, reloads of
// configs, attaching to new processes, on-demand scripts) needs only those.
func dropCapabilities(keep, runAs string, logger *slog.Logger) error {
	all := strings.EqualFold(strings.TrimSpace(keep), "all")
	if all && runAs == "" {
		return nil
	}
	mask := ^uint64(0)
	if !all {
		var err error
		if mask, err = caps.Parse(keep); err != nil {
			return err
		}
	}
	var err error
	if runAs != "" {
		uid, gid, lerr := lookupUser(runAs)
		if lerr != nil {
			return lerr
		}
		err = caps.SwitchUser(uid, gid, mask)
		if err == nil {
			logger.Info("running as", "user", runAs, "uid", uid)
		}
	} else {
		err = caps.Drop(mask)
	}
	if err != nil {
		if errors.Is(err, caps.ErrNotSupported) {
			logger.Warn("capabilities not dropped", "err", err)
			return nil
		}
		return err
	}
	logger.Info("capabilities dropped", "kept", strings.Join(caps.Names(mask), ","))
	return nil
}

// lookupUser resolves a user name or numeric uid.
func lookupUser(name string) (int, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return 0, 0, fmt.Errorf("--runas.user %q: %w", name, err)
		}
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("--runas.user %q: uid %q", name, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("--runas.user %q: gid %q", name, u.Gid)
	}
	return uid, gid, nil
}
