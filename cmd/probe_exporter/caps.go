package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/probe-exporter/probe_exporter/cmd/probe_exporter/internal/component"
	"github.com/probe-exporter/probe_exporter/internal/caps"
	"github.com/probe-exporter/probe_exporter/scripts"
	"github.com/probe-exporter/probe_exporter/web"
)

// Features whose capability needs are planned at start.
const (
	featurePrograms = "BPF programs"
	featureSymbols  = "kernel symbols"
	featureProcs    = "process files"
	featureUprobes  = "uprobes"
	featureBpftrace = "bpftrace scripts"
	featureStap     = "systemtap scripts"
	featureXDP      = "xdp programs"
)

// capabilityNeeds lists what the features configured at start need, each
// with the reason measured on Linux 6.x: what fails without it.
func (x *daemon) capabilityNeeds(f *flags) []caps.Need {
	needs := []caps.Need{{
		Feature: featurePrograms,
		Caps:    caps.Mask(caps.BPF, caps.Perfmon, caps.SysResource),
		Why:     "load maps and programs, attach tracepoints, raw tracepoints, kprobes and perf events, at start and at every reload (CAP_SYS_RESOURCE, when held, raises RLIMIT_MEMLOCK for kernels before 5.11)",
	}}
	if f.configDir != "" || f.profileConfig != "" {
		needs = append(needs, caps.Need{
			Feature: featureSymbols,
			Caps:    caps.Mask(caps.Syslog),
			Why:     "/proc/kallsyms shows addresses only to CAP_SYSLOG: ksym and kstack decoders, kaddrs, the profiler's kernel frames",
		}, caps.Need{
			Feature: featureProcs,
			Caps:    caps.Mask(caps.SysPtrace, caps.DacReadSearch, caps.CheckpointRestore),
			Why:     "read /proc/PID/exe, /proc/PID/root and /proc/PID/maps of other users' processes: userspace targets and the profiler's symbols; open /proc/PID/map_files (CAP_CHECKPOINT_RESTORE, Linux >= 5.9), the very files processes map, which no rename or mount in their namespace can swap",
		})
	}
	if x.configs.UsesXDP() {
		needs = append(needs, caps.Need{
			Feature: featureXDP,
			Caps:    caps.Mask(caps.NetAdmin),
			Why:     "the kernel loads XDP programs (xdp/IFNAME) only for CAP_NET_ADMIN (or CAP_SYS_ADMIN): EPERM at load without it, at start and at every reload",
		})
	}
	if x.configs.UsesUprobes() {
		needs = append(needs, caps.Need{
			Feature: featureUprobes,
			Caps:    caps.Mask(caps.SysAdmin, caps.SysPtrace, caps.DacReadSearch, caps.Kill),
			Why:     "the kernel creates uprobes and USDT probes (perf_event_open on the uprobe PMU) only for CAP_SYS_ADMIN, CAP_PERFMON is not enough; files new since start are probed after start-up, and the first process of such a file is held at exec until then (continuing another user's process needs CAP_KILL)",
		})
	}
	for _, kind := range x.scriptKinds() {
		switch kind {
		case scripts.KindBpftrace:
			needs = append(needs, caps.Need{
				Feature: featureBpftrace,
				Caps:    caps.Mask(caps.SysAdmin, caps.BPF, caps.Perfmon, caps.SysPtrace, caps.DacReadSearch, caps.Syslog, caps.SysResource),
				Why:     "bpftrace finds the kernel's BTF with BPF_BTF_GET_NEXT_ID, which needs CAP_SYS_ADMIN (without it: \"unknown type name\" for args and kernel types)",
			})
		case scripts.KindStap:
			needs = append(needs, caps.Need{
				Feature: featureStap,
				Caps:    caps.All(),
				Why:     "stap builds and loads a kernel module (CAP_SYS_MODULE) and its staprun and stapio expect full root",
			})
		}
	}
	return needs
}

// applyCapabilities keeps only what the plan keeps once everything is
// loaded and attached, and says at start what is kept and why and which
// features cannot work.
func applyCapabilities(plan caps.Plan, runAs string, logger *slog.Logger) error {
	for _, n := range plan.Needs {
		logger.Info("capabilities needed", "feature", n.Feature, "caps", strings.Join(caps.Names(n.Caps&plan.Keep), ","), "why", n.Why)
	}
	for _, u := range plan.Unmet {
		logger.Warn("feature cannot work: capability not kept", "feature", u.Feature, "missing", strings.Join(caps.Names(u.Missing), ","), "why", u.Why)
	}
	if plan.DropNothing && runAs == "" {
		logger.Info("capabilities kept: all (--capabilities.keep=all)")
		return nil
	}
	var err error
	if runAs != "" {
		uid, gid, lerr := lookupUser(runAs)
		if lerr != nil {
			return lerr
		}
		err = caps.SwitchUser(uid, gid, plan.Keep)
		if err == nil {
			logger.Info("running as", "user", runAs, "uid", uid)
		}
	} else {
		err = caps.Drop(plan.Keep)
	}
	if err != nil {
		if errors.Is(err, caps.ErrNotSupported) {
			logger.Warn("capabilities not dropped", "err", err)
			return nil
		}
		if !errors.Is(err, caps.ErrBoundingKept) {
			return err
		}
		logger.Warn("bounding set kept", "err", err)
	}
	logger.Info("capabilities dropped", "kept", strings.Join(caps.Names(plan.Keep), ","))
	return nil
}

// planCapabilities matches the configured features against what the
// process holds and --capabilities.keep.
func (x *daemon) planCapabilities(f *flags) (caps.Plan, error) {
	held, err := caps.Held()
	if err != nil {
		return caps.Plan{}, err
	}
	plan, err := caps.NewPlan(f.capsKeep, held, x.capabilityNeeds(f))
	if err != nil {
		return plan, err
	}
	if f.runAs != "" {
		// Scripts run as that user, without capabilities.
		for _, n := range plan.Needs {
			if n.Feature == featureBpftrace || n.Feature == featureStap {
				if _, ok := plan.UnmetFor(n.Feature); !ok {
					plan.Unmet = append(plan.Unmet, caps.Unmet{Need: caps.Need{Feature: n.Feature, Caps: n.Caps, Why: fmt.Sprintf("scripts run as --runas.user %s, without capabilities", f.runAs)}, Missing: n.Caps})
				}
			}
		}
	}
	return plan, nil
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

// setCapabilityPlan records the plan for the landing page and refuses
// the scripts that cannot run with it.
func (x *daemon) setCapabilityPlan(p caps.Plan) {
	x.privileges.set(p)
	if x.scripts == nil {
		return
	}
	for _, u := range p.Unmet {
		switch u.Feature {
		case featureBpftrace:
			x.scripts.Refuse(scripts.KindBpftrace, u.Error())
		case featureStap:
			x.scripts.Refuse(scripts.KindStap, u.Error())
		}
	}
}

// scriptKinds lists the kinds of scripts found at start.
func (x *daemon) scriptKinds() []scripts.Kind {
	if x.scripts == nil {
		return nil
	}
	out := x.scripts.Kinds()
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// privileges shows on the landing page what each configured feature
// needs and whether it is kept.
type privileges struct {
	mu   sync.Mutex
	plan caps.Plan
}

var _ component.Statuser = (*privileges)(nil)

func (p *privileges) set(plan caps.Plan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = plan
}

func (p *privileges) Run(ctx context.Context) error { return component.Idle(ctx) }

func (p *privileges) Status(st *web.Status) {
	p.mu.Lock()
	plan := p.plan
	p.mu.Unlock()
	for _, n := range plan.Needs {
		cs := web.CapabilityStatus{Feature: n.Feature, Caps: strings.Join(caps.Names(n.Caps&plan.Keep), ", "), Why: n.Why}
		if u, ok := plan.UnmetFor(n.Feature); ok {
			cs.Missing = strings.Join(caps.Names(u.Missing), ", ")
			cs.Why = u.Why
		}
		st.Capabilities = append(st.Capabilities, cs)
	}
}
