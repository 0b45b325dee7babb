// Package scripts serves a directory of scripts as Prometheus targets with
// systemtap stap-exporter's semantics: each script is /NAME, started by its
// first request, stopped after a keepalive without requests, and scripts
// whose name contains "autostart" run always and are restarted when they
// exit. Systemtap (*.stp), bpftrace (*.bt) and executables are supported.
package scripts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/internal/privdir"
)

// Options configure a Supervisor.
type Options struct {
	Dir string
	// Keepalive stops a script this long after its last request (0: never).
	Keepalive time.Duration
	// StartWait is how long a request waits for a starting script's first
	// output before answering 503.
	StartWait time.Duration
	// MaxRunning caps scripts running at once (0: no cap).
	MaxRunning int
	// MaxOutput caps the output kept per script, in bytes.
	MaxOutput int
	Logger    *slog.Logger
	// ExporterID makes systemtap module names unique per exporter.
	ExporterID string

	// For tests: programs and directories the runners use.
	Bpftrace, Stap   string
	ProcRoot, VarTmp string
	// StopGrace is how long a stopped script has between SIGTERM and
	// SIGKILL.
	StopGrace time.Duration
	// BackoffMax caps the restart delay of autostart scripts.
	BackoffMax time.Duration
	// NoCgroups keeps scripts out of per-run cgroups: what they start
	// is then found by their environment marker alone.
	NoCgroups bool

	// Timeout bounds one run of a one-shot executable (killed past it)
	// and how long a request waits for an executable's first output or
	// exit; Timeouts overrides it per script name.
	Timeout  time.Duration
	Timeouts map[string]time.Duration
	// MinInterval is how long a one-shot script's output is reused
	// before a request runs it again; autostart one-shot scripts run
	// again this long after each run.
	MinInterval time.Duration
}

func (o *Options) bpftrace() string { return or(o.Bpftrace, "bpftrace") }
func (o *Options) stap() string     { return or(o.Stap, "stap") }
func (o *Options) procRoot() string { return or(o.ProcRoot, "/proc") }
func (o *Options) varTmp() string   { return or(o.VarTmp, "/var/tmp") }

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Status is a script's state for the landing page.
type Status struct {
	Name       string
	Kind       Kind
	State      State
	Restarts   int
	LastError  string
	LastOutput time.Time
	// LastOutputSize is the size in bytes of the last output.
	LastOutputSize int
	Autostart      bool
	OneShot        bool // an executable whose runs exit 0: run per request
}

// Supervisor runs the scripts of one directory.
type Supervisor struct {
	opts Options

	mu      sync.Mutex
	scripts map[string]*script
	refused map[Kind]string // kinds that cannot run here, and why
	ctx     context.Context
	rt      *shared
	closed  atomic.Bool // Run has ended: nothing starts any more

	descs struct {
		up, state, restarts, outputErrors, lastOutput *prometheus.Desc
	}
}

// New discovers the scripts in opts.Dir.
func New(opts Options) (*Supervisor, error) {
	if opts.StartWait <= 0 {
		opts.StartWait = 2 * time.Second
	}
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = 16 << 20
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 2 * time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ExporterID == "" {
		opts.ExporterID = strconv.Itoa(os.Getpid())
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	s := &Supervisor{opts: opts, scripts: map[string]*script{}, ctx: context.Background()}
	s.rt = &shared{pid: os.Getpid()}
	if !opts.NoCgroups {
		s.rt.cgroupRoot = cgroupRoot(hostProc, s.rt.pid)
		if s.rt.cgroupRoot != "" {
			reapStale(s.rt.cgroupRoot, hostProc, opts.Logger)
		}
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("probe_exporter_script_"+name, help, []string{"script", "kind"}, nil)
	}
	s.descs.up = d("up", "Whether the script is running (1) or not (0).")
	s.descs.restarts = d("restarts_total", "Times the script was started again.")
	s.descs.outputErrors = d("output_errors_total", "Scrapes whose output did not parse.")
	s.descs.lastOutput = d("last_output_age_seconds", "Seconds since the script last produced output.")
	s.descs.state = prometheus.NewDesc("probe_exporter_script_state", "1 for the script's current state (idle, starting, running, failed).", []string{"script", "kind", "state"}, nil)
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// discover lists servable scripts: regular files directly in the
// directory (symlinks only when they stay inside it), not hidden, named
// *.stp or *.bt or executable, with a name that is valid UTF-8 (it is a
// label value and a URL path); others are skipped with a warning.
func discover(dir string, logger *slog.Logger) (map[string]Kind, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("scripts directory: %w", err)
	}
	found := map[string]Kind{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if !utf8.ValidString(name) {
			logger.Warn("skipping script whose file name is not valid UTF-8", "file", strconv.QuoteToASCII(name))
			continue
		}
		p := filepath.Join(dir, name)
		real, err := filepath.EvalSymlinks(p)
		if err != nil || filepath.Dir(real) != dir && !strings.HasPrefix(real, dir+string(filepath.Separator)) {
			continue // dangling, or leaves the directory
		}
		st, err := os.Stat(real)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		switch {
		case strings.HasSuffix(name, ".stp"):
			found[name] = KindStap
		case strings.HasSuffix(name, ".bt"):
			found[name] = KindBpftrace
		case st.Mode()&0o111 != 0:
			found[name] = KindExec
		default:
			continue
		}
		// Listed all the same: each request is answered 500 with why.
		if err := trustedScript(dir, p); err != nil {
			logger.Error("script refused: root runs only scripts no other user can change", "script", name, "err", err)
		}
	}
	return found, nil
}

// trustedScript refuses a script that a user other than root (or the
// exporter's own user) could change, since it runs as root: the file (a
// symlink: what it resolves to) must be owned by root and writable by no
// one else, and its directory and every one above it, as the scripts
// directory itself (stap loads the modules it leaves there), owned by
// root and writable by no one else. It is checked at discovery and
// before every run.
func trustedScript(dir, path string) error {
	if _, err := privdir.Check(dir); err != nil {
		return fmt.Errorf("scripts directory: %w", err)
	}
	return privdir.CheckFile(path)
}

// Reload discovers the directory again: new scripts appear, removed ones
// stop and answer 404.
func (s *Supervisor) Reload() error {
	found, err := discover(s.opts.Dir, s.opts.Logger)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var gone []*script
	for name, sc := range s.scripts {
		if k, ok := found[name]; !ok || k != sc.kind {
			gone = append(gone, sc)
			delete(s.scripts, name)
		}
	}
	var added []*script
	for name, kind := range found {
		if sc, ok := s.scripts[name]; ok {
			// The file may have changed form: its next run tells.
			sc.mu.Lock()
			if !sc.running() {
				sc.oneshot, sc.result = false, nil
			}
			sc.mu.Unlock()
			continue
		}
		sc := &script{
			name:      name,
			path:      filepath.Join(s.opts.Dir, name),
			kind:      kind,
			autostart: strings.Contains(name, "autostart"),
			opts:      &s.opts,
			logger:    s.opts.Logger,
			state:     StateIdle,
			stderr:    &rateLimited{burst: 20},
			module:    stapModuleName(s.opts.ExporterID, name),
			sup:       s.rt,
		}
		if kind == KindBpftrace {
			if src, err := os.ReadFile(sc.path); err == nil {
				sc.bt = inferBpftrace(string(src))
			}
		}
		s.scripts[name] = sc
		added = append(added, sc)
	}
	ctx := s.ctx
	s.mu.Unlock()
	for _, sc := range gone {
		sc.mu.Lock()
		sc.removed = true
		sc.mu.Unlock()
		go sc.stop()
	}
	if ctx != context.Background() && !s.closed.Load() {
		for _, sc := range added {
			if sc.autostart {
				go s.keepRunning(ctx, sc)
			}
		}
	}
	return nil
}

// Run starts autostart scripts and stops idle ones until ctx ends; then
// every script is stopped (its whole process group).
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	var auto []*script
	for _, sc := range s.scripts {
		if sc.autostart {
			auto = append(auto, sc)
		}
	}
	s.mu.Unlock()
	for _, sc := range auto {
		go s.keepRunning(ctx, sc)
	}
	tick := time.NewTicker(reapInterval(s.opts.Keepalive))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.closed.Store(true)
			s.stopAll()
			if s.rt.cgroupRoot != "" {
				_ = os.Remove(s.rt.cgroupRoot)
			}
			return nil
		case <-tick.C:
			s.reap()
		}
	}
}

func reapInterval(keepalive time.Duration) time.Duration {
	if keepalive > 0 && keepalive/4 < time.Second {
		return max(keepalive/4, 10*time.Millisecond)
	}
	return time.Second
}

// reap stops on-demand scripts idle past the keepalive, each in its own
// goroutine so that one slow stop holds up no other.
func (s *Supervisor) reap() {
	if s.opts.Keepalive <= 0 {
		return
	}
	for _, sc := range s.list() {
		if sc.autostart {
			continue
		}
		sc.mu.Lock()
		var st *stopping
		if sc.running() && !sc.stopping && sc.inflight == 0 && time.Since(sc.lastReq) > s.opts.Keepalive {
			st = sc.beginStop()
		}
		sc.mu.Unlock()
		if st != nil {
			s.opts.Logger.Info("stopping idle script", "script", sc.name, "keepalive", s.opts.Keepalive)
			go sc.finishStop(st)
		}
	}
}

// keepRunning runs an autostart script, restarting it with capped
// exponential backoff whenever it exits.
func (s *Supervisor) keepRunning(ctx context.Context, sc *script) {
	backoff := 100 * time.Millisecond
	for {
		if reason := s.refusal(sc.kind); reason != "" {
			s.opts.Logger.Error("autostart script cannot run", "script", sc.name, "reason", reason)
			return
		}
		sc.mu.Lock()
		if sc.removed || s.closed.Load() {
			sc.mu.Unlock()
			return
		}
		err := sc.start(false)
		done := sc.done
		started := time.Now()
		sc.mu.Unlock()
		if err != nil {
			s.opts.Logger.Error("autostart script failed to start", "script", sc.name, "err", err)
		} else {
			select {
			case <-ctx.Done():
				return
			case <-done:
			}
		}
		sc.mu.Lock()
		ranOnce := sc.oneshot && sc.result != nil && sc.result.err == nil && !sc.result.at.Before(started)
		sc.mu.Unlock()
		if ranOnce {
			// A one-shot script runs on an interval.
			backoff = 100 * time.Millisecond
			select {
			case <-ctx.Done():
				return
			case <-time.After(max(s.opts.MinInterval, time.Second)):
			}
			continue
		}
		if time.Since(started) > 2*s.opts.BackoffMax {
			backoff = 100 * time.Millisecond // it ran fine for a while
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, s.opts.BackoffMax)
	}
}

func (s *Supervisor) list() []*script {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*script, 0, len(s.scripts))
	for _, sc := range s.scripts {
		out = append(out, sc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (s *Supervisor) stopAll() {
	var wg sync.WaitGroup
	for _, sc := range s.list() {
		wg.Add(1)
		go func() { defer wg.Done(); sc.stop() }()
	}
	wg.Wait()
}

// Refuse marks a kind of script as unable to run here (bpftrace without
// the capabilities it needs, say): its scripts are not started, requests
// answer 503 with the reason, and their status shows it.
func (s *Supervisor) Refuse(kind Kind, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil {
		s.refused = map[Kind]string{}
	}
	s.refused[kind] = reason
}

func (s *Supervisor) refusal(kind Kind) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused[kind]
}

// Status lists every script's state.
func (s *Supervisor) Status() []Status {
	var out []Status
	for _, sc := range s.list() {
		st := sc.status()
		if reason := s.refusal(sc.kind); reason != "" {
			st.LastError = "cannot run: " + reason
		}
		out = append(out, st)
	}
	return out
}

// ServeScript answers a request for the script called name (the URL path
// without its leading slash). Only names found in the directory are
// served; nothing from the request reaches the script.
func (s *Supervisor) ServeScript(w http.ResponseWriter, r *http.Request, name string) {
	arrived := time.Now()
	s.mu.Lock()
	sc, ok := s.scripts[name]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if reason := s.refusal(sc.kind); reason != "" {
		http.Error(w, fmt.Sprintf("%s cannot run: %s", name, reason), http.StatusServiceUnavailable)
		return
	}
	sc.mu.Lock()
	sc.lastReq = time.Now()
	// A script is not idle while a request waits for it; its keepalive
	// counts from the end of the last request.
	sc.inflight++
	defer func() {
		sc.mu.Lock()
		sc.inflight--
		sc.lastReq = time.Now()
		sc.mu.Unlock()
	}()
	if sc.running() && sc.stopping {
		// Being stopped: wait for that to end, then start afresh
		// rather than answer from a dying process.
		done := sc.done
		sc.mu.Unlock()
		t := time.NewTimer(s.opts.StartWait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		sc.mu.Lock()
		if sc.running() {
			sc.mu.Unlock()
			w.Header().Set("Retry-After", "1")
			http.Error(w, fmt.Sprintf("%s is stopping: retry", name), http.StatusServiceUnavailable)
			return
		}
	}
	if r := sc.freshResult(); r != nil && (sc.autostart || !sc.running()) {
		// A one-shot result young enough, or an autostart one-shot
		// script's newest: no run for this request.
		sc.mu.Unlock()
		s.writeResult(w, sc, r)
		return
	}
	if !sc.running() {
		if s.closed.Load() {
			sc.mu.Unlock()
			http.Error(w, fmt.Sprintf("%s: the exporter is shutting down", name), http.StatusServiceUnavailable)
			return
		}
		if s.opts.MaxRunning > 0 && !s.reserve() {
			sc.mu.Unlock()
			w.Header().Set("Retry-After", "10")
			http.Error(w, fmt.Sprintf("%s: too many scripts running (limit %d)", name, s.opts.MaxRunning), http.StatusServiceUnavailable)
			return
		}
		if err := sc.start(s.opts.MaxRunning > 0); err != nil {
			sc.mu.Unlock()
			http.Error(w, fmt.Sprintf("%s: %v", name, err), http.StatusInternalServerError)
			return
		}
	}
	ready, done, exited := sc.ready, sc.done, sc.exited
	startWait := s.opts.StartWait
	if sc.kind == KindExec {
		// An executable's first output may be its exit (one-shot):
		// wait for it as long as a run may take, and for a known
		// one-shot run also for its kill.
		startWait = max(startWait, sc.timeout())
		if sc.oneshot {
			ready = nil
			startWait += sc.stopGrace() + 2*sc.killWait()
		}
	}
	sc.mu.Unlock()

	// Wait for the first output of this run, up to the start wait.
	wait := time.NewTimer(startWait)
	defer wait.Stop()
	select {
	case <-ready:
	case <-done:
	case <-wait.C:
	case <-r.Context().Done():
		return
	}
	if sc.kind == KindExec && closed(done) {
		sc.mu.Lock()
		res := sc.result
		sc.mu.Unlock()
		if res != nil {
			s.writeResult(w, sc, res)
			return
		}
	}
	// A request is answered within the start wait plus a second, even
	// when a bpftrace dump it joined takes longer.
	ctx, cancel := context.WithDeadline(r.Context(), arrived.Add(s.opts.StartWait+900*time.Millisecond))
	defer cancel()
	out, err := sc.scrape(ctx)
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("%s is busy printing its maps: retry", name), http.StatusServiceUnavailable)
		return
	}
	if r.Context().Err() != nil {
		return
	}
	if err != nil && !errors.Is(err, errStarting) && closed(exited) {
		// The process died under the request (bpftrace that failed to
		// attach after saying it did): its own reason, not ours.
		if msg, ok := sc.deathReason(done); ok {
			http.Error(w, fmt.Sprintf("%s failed: %s", name, msg), http.StatusInternalServerError)
			return
		}
	}
	if errors.Is(err, errStarting) {
		sc.mu.Lock()
		alive, lastErr := sc.running(), sc.lastErr
		sc.mu.Unlock()
		if !alive && lastErr != "" {
			http.Error(w, fmt.Sprintf("%s failed: %s", name, lastErr), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(s.opts.StartWait.Seconds()))))
		http.Error(w, fmt.Sprintf("%s is starting: refresh to access metrics", name), http.StatusServiceUnavailable)
		return
	}
	if err == nil {
		out, err = sc.validated(out)
	}
	var tooLarge errTooLarge
	if errors.As(err, &tooLarge) {
		if sc.kind != KindExec { // exec blocks are counted as they come
			sc.mu.Lock()
			sc.outputErrs++
			sc.lastErr = err.Error()
			sc.mu.Unlock()
		}
		http.Error(w, fmt.Sprintf("%s: %v", name, err), http.StatusInternalServerError)
		return
	}
	if err != nil {
		sc.mu.Lock()
		sc.outputErrs++
		sc.lastErr = err.Error()
		sc.mu.Unlock()
		http.Error(w, fmt.Sprintf("%s: bad output: %v", name, err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(out)
}

// closed tells whether c is closed (a nil channel is not).
func closed(c chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// deathReason waits (bounded) for the run whose end is done to be fully
// accounted for and returns why it ended: its exit status and stderr.
func (sc *script) deathReason(done chan struct{}) (string, bool) {
	t := time.NewTimer(sc.stopGrace() + 2*sc.killWait())
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		return "", false
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.lastErr, sc.lastErr != "" && sc.state == StateFailed
}

// reserve counts one more running script if that stays within
// MaxRunning. The count is the supervisor's own, so no script's lock is
// ever taken while another's is held.
func (s *Supervisor) reserve() bool {
	for {
		n := s.rt.live.Load()
		if n >= int64(s.opts.MaxRunning) {
			return false
		}
		if s.rt.live.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Describe implements prometheus.Collector (unchecked).
func (s *Supervisor) Describe(chan<- *prometheus.Desc) {}

// Collect reports each script's state.
func (s *Supervisor) Collect(ch chan<- prometheus.Metric) {
	for _, sc := range s.list() {
		sc.mu.Lock()
		up := 0.0
		if sc.running() {
			up = 1
		}
		state, restarts, outErrs, last := sc.state, sc.restarts, sc.outputErrs, sc.lastOutput
		sc.mu.Unlock()
		k := string(sc.kind)
		// One bad metric must not take the others with it.
		send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
			if m, err := prometheus.NewConstMetric(d, t, v, labels...); err == nil {
				ch <- m
			}
		}
		send(s.descs.up, prometheus.GaugeValue, up, sc.name, k)
		for _, st := range []State{StateIdle, StateStarting, StateRunning, StateFailed} {
			v := 0.0
			if st == state {
				v = 1
			}
			send(s.descs.state, prometheus.GaugeValue, v, sc.name, k, string(st))
		}
		send(s.descs.restarts, prometheus.CounterValue, float64(restarts), sc.name, k)
		send(s.descs.outputErrors, prometheus.CounterValue, float64(outErrs), sc.name, k)
		if !last.IsZero() {
			send(s.descs.lastOutput, prometheus.GaugeValue, time.Since(last).Seconds(), sc.name, k)
		}
	}
}
