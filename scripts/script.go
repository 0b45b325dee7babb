package scripts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Kind is how a script runs.
type Kind string

// Script kinds.
const (
	KindStap     Kind = "stp"
	KindBpftrace Kind = "bt"
	KindExec     Kind = "exec"
)

// State of a script.
type State string

// Script states.
const (
	StateIdle     State = "idle"
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateFailed   State = "failed"
)

// errStarting means the script runs but has no output yet.
var errStarting = errors.New("script is starting")

// script is one supervised script and its process.
type script struct {
	name      string
	path      string
	kind      Kind
	autostart bool
	opts      *Options
	logger    *slog.Logger
	bt        btScript
	module    string // systemtap module name
	sup       *shared

	// The last output validated and its answer: the requests for one
	// output share one validation (which holds many times the output's
	// size), so parallel requests cannot multiply that memory.
	valMu          sync.Mutex
	valRaw, valOut []byte
	valErr         error

	mu         sync.Mutex
	cmd        *exec.Cmd
	jail       *jail
	stdout     *os.File      // read end of the process's stdout
	done       chan struct{} // closed when the run and all it started are gone
	exited     chan struct{} // closed when the script's own process exits
	state      State
	stopping   bool
	started    time.Time
	lastReq    time.Time
	inflight   int // requests being answered
	lastOutput time.Time
	// lastOutputSize is the size in bytes of the last output served.
	lastOutputSize int
	lastErr        string
	restarts       int
	starts         int
	outputErrs     int
	ready          chan struct{} // closed at the first output of this run
	block          []byte        // exec: newest complete block
	blockErr       error         // exec: the newest block broke a limit
	trailing       []byte        // exec: what the run printed after its last "# EOF"
	trailErr       error         // exec: that trailing output broke a limit
	oneshot        bool          // exec: its last run exited 0 (learned, not configured)
	result         *runResult    // exec: the newest one-shot run's outcome
	timedOut       *exec.Cmd     // exec: the one-shot run killed for its timeout
	stderr         *rateLimited
	removed        bool

	// bpftrace: one dump at a time, shared by every request waiting,
	// collected from the current run's output.
	dump      *dumpCall
	collector *btCollector
}

// shared is what every script of a supervisor shares.
type shared struct {
	live       atomic.Int64 // processes running
	seq        atomic.Int64 // run numbers
	cgroupRoot string
	pid        int
}

func (s *script) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Name: s.name, Kind: s.kind, State: s.state, Restarts: s.restarts, LastError: s.lastErr, LastOutput: s.lastOutput, LastOutputSize: s.lastOutputSize, Autostart: s.autostart, OneShot: s.kind == KindExec && s.oneshot}
}

// running reports whether the process is alive; callers hold s.mu.
func (s *script) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stopGrace and killWait bound every wait of a stop.
func (s *script) stopGrace() time.Duration { return s.opts.StopGrace }
func (s *script) killWait() time.Duration  { return 2 * time.Second }

// start launches the process in its own process group and cgroup (when
// the exporter may make one); callers hold s.mu. reserved says the
// caller already counted it in sup.live.
func (s *script) start(reserved bool) error {
	if s.running() {
		if reserved {
			s.sup.live.Add(-1)
		}
		return nil
	}
	if !reserved {
		s.sup.live.Add(1)
	}
	if err := s.launch(); err != nil {
		s.sup.live.Add(-1)
		s.state = StateFailed
		s.lastErr = err.Error()
		return err
	}
	return nil
}

func (s *script) launch() error {
	if err := trustedScript(s.opts.Dir, s.path); err != nil {
		return fmt.Errorf("refused: %w", err)
	}
	cmd, err := s.command()
	if err != nil {
		return err
	}
	// A module an earlier exporter left loaded (killed before its
	// scripts stopped) would make staprun fail; one in use is not ours
	// to remove (callers hold s.mu: no waiting here).
	if err := s.unloadStapModule(0); err != nil {
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	marker := fmt.Sprintf("%d.%d", s.sup.pid, s.sup.seq.Add(1))
	j := newJail(s.sup.cgroupRoot, s.name, marker, hostProc)
	cmd.Dir = s.opts.Dir
	cmd.Env = append(os.Environ(), "PROBE_EXPORTER_SCRIPT="+s.name, j.marker)
	outR, outW, err := os.Pipe()
	if err != nil {
		j.remove()
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		j.remove()
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	attr := func() *syscall.SysProcAttr {
		a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if j.fd >= 0 {
			a.UseCgroupFD, a.CgroupFD = true, j.fd
		}
		return a
	}
	cmd.SysProcAttr = attr()
	err = cmd.Start()
	if err != nil && j.fd >= 0 {
		// The cgroup refused the process (e.g. controllers enabled
		// below the exporter's cgroup): the marker still holds it.
		j.dropCgroup()
		cmd2, cerr := s.command()
		if cerr == nil {
			cmd2.Dir, cmd2.Env, cmd2.Stdout, cmd2.Stderr = cmd.Dir, cmd.Env, outW, errW
			cmd2.SysProcAttr = attr()
			cmd, err = cmd2, cmd2.Start()
		}
	}
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		j.remove()
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	if s.starts > 0 {
		s.restarts++
	}
	s.starts++
	s.cmd, s.jail, s.stdout = cmd, j, outR
	s.state = StateStarting
	s.stopping = false
	s.started = time.Now()
	s.ready = make(chan struct{})
	s.block, s.blockErr = nil, nil
	s.trailing, s.trailErr = nil, nil
	collector := &btCollector{}
	s.collector = collector
	done, exited := make(chan struct{}), make(chan struct{})
	s.done, s.exited = done, exited
	ready := s.ready
	var errTail stderrLines
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); s.readStdout(outR, ready, collector) }()
	go func() { defer readers.Done(); s.readStderr(errR, &errTail) }()
	go func() {
		err := cmd.Wait()
		close(exited)
		s.sup.live.Add(-1)
		// Whatever the script left behind goes with it.
		if kerr := j.terminate(s.stopGrace(), s.killWait()); kerr != nil {
			s.logger.Error("script descendants survive", "script", s.name, "err", kerr)
		}
		if uerr := s.unloadStapModule(s.killWait()); uerr != nil {
			s.logger.Error("systemtap module left loaded", "script", s.name, "err", uerr)
		}
		// With every writer gone the readers see EOF; a writer that
		// escaped the jail must not hold them.
		if !waitGroupFor(&readers, s.killWait()) {
			outR.Close()
			errR.Close()
			readers.Wait()
		}
		outR.Close()
		errR.Close()
		j.remove()
		s.mu.Lock()
		if s.cmd == cmd {
			s.exitedWith(cmd, err, &errTail)
		}
		s.mu.Unlock()
		close(done)
	}()
	if s.kind == KindExec && s.oneshot {
		go s.watchTimeout(cmd, exited)
	}
	s.logger.Info("script started", "script", s.name, "pid", cmd.Process.Pid, "cgroup", j.cgroup)
	return nil
}

// waitGroupFor waits for wg at most d.
func waitGroupFor(wg *sync.WaitGroup, d time.Duration) bool {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}

// command builds the process for the script's kind.
func (s *script) command() (*exec.Cmd, error) {
	switch s.kind {
	case KindBpftrace:
		bt, err := exec.LookPath(s.opts.bpftrace())
		if err != nil {
			return nil, fmt.Errorf("%s needs bpftrace: %w", s.name, err)
		}
		return exec.Command(bt, "-f", "json", s.path), nil
	case KindStap:
		return s.stapCommand()
	}
	return exec.Command(s.path), nil
}

// errTooLarge is an output over --scripts.max-output.
type errTooLarge struct{ max int }

func (e errTooLarge) Error() string {
	return fmt.Sprintf("output over the %d-byte limit (--scripts.max-output)", e.max)
}

// readStdout follows the process's output: exec scripts print blocks
// ending with "# EOF"; bpftrace prints JSON lines; systemtap's output goes
// to procfs and stdout is only logged. No line or block is held beyond
// the output limit, and reading never stops before the process's end.
func (s *script) readStdout(r io.Reader, ready chan struct{}, collector *btCollector) {
	lr := newLineReader(r, s.opts.MaxOutput)
	var block bytes.Buffer
	over := false
	markReady := func() {
		s.mu.Lock()
		if ready == s.ready && s.state == StateStarting {
			s.state = StateRunning
		}
		s.mu.Unlock()
		select {
		case <-ready:
		default:
			close(ready)
		}
	}
	for {
		line, tooLong, err := lr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				s.logger.Warn("reading script output", "script", s.name, "err", err)
			}
			if s.kind == KindExec {
				// What follows the last "# EOF" is a one-shot
				// script's whole output, if the run exits 0.
				s.mu.Lock()
				if over {
					s.trailing, s.trailErr = nil, errTooLarge{s.opts.MaxOutput}
				} else {
					s.trailing, s.trailErr = append([]byte(nil), block.Bytes()...), nil
				}
				s.mu.Unlock()
			}
			return
		}
		switch s.kind {
		case KindExec:
			if !tooLong && bytes.Equal(bytes.TrimSpace(line), []byte("# EOF")) {
				out := append([]byte(nil), block.Bytes()...)
				block.Reset()
				s.mu.Lock()
				if over {
					s.block, s.blockErr = nil, errTooLarge{s.opts.MaxOutput}
					s.outputErrs++
					s.lastErr = fmt.Sprintf("block %v", s.blockErr)
					s.logger.Warn("script output block too large; not served", "script", s.name, "max", s.opts.MaxOutput)
				} else {
					s.block, s.blockErr = out, nil
				}
				s.lastOutput, s.lastOutputSize = time.Now(), len(out)
				s.mu.Unlock()
				over = false
				markReady()
				continue
			}
			if over {
				continue
			}
			if tooLong || block.Len()+len(line)+1 > s.opts.MaxOutput {
				over = true
				block.Reset()
				continue
			}
			block.Write(line)
			block.WriteByte('\n')
		case KindBpftrace:
			typ := btLineType(line)
			switch {
			case typ == "attached_probes":
				markReady()
			case btMapTypes[typ] || tooLong && bytes.HasPrefix(line, []byte("{")):
				collector.add(line, tooLong, s.opts.MaxOutput)
			case typ != "" && closed(ready):
				// printf, time, join...: output of probes, printed
				// from bpftrace's event loop, after BEGIN.
				collector.settle()
			}
		case KindStap:
			s.logger.Debug("script output", "script", s.name, "line", string(line))
		}
	}
}

// readStderr logs stderr (rate-limited, long lines cut) and keeps its
// tail for error messages; it reads to the end whatever the script
// writes, so that a script is never blocked on a full stderr pipe.
func (s *script) readStderr(r io.Reader, tail *stderrLines) {
	lr := newLineReader(r, 4096)
	for {
		line, tooLong, err := lr.next()
		if err != nil {
			return
		}
		l := string(line)
		if tooLong {
			l += " [line cut at 4096 bytes]"
		}
		tail.add(l)
		s.stderr.log(s.logger, s.name, l)
	}
}

// stopping is one stop of one run, decided under the script's lock so
// that a later run is never stopped for an earlier run's idleness.
type stopping struct {
	cmd          *exec.Cmd
	jail         *jail
	done, exited chan struct{}
	already      bool // another stop of this run is under way
}

// beginStop marks the current run as stopping; callers hold s.mu. It
// returns nil when nothing runs.
func (s *script) beginStop() *stopping {
	s.state = StateIdle
	if s.cmd == nil || s.cmd.Process == nil || s.done == nil || !s.running() {
		return nil
	}
	st := &stopping{cmd: s.cmd, jail: s.jail, done: s.done, exited: s.exited, already: s.stopping}
	s.stopping = true
	return st
}

// stop ends the current run and everything it started.
func (s *script) stop() {
	s.mu.Lock()
	st := s.beginStop()
	s.mu.Unlock()
	s.finishStop(st)
}

// finishStop ends a run: SIGTERM to its process group and jail, SIGKILL
// after grace; every wait is bounded.
func (s *script) finishStop(st *stopping) {
	if st == nil {
		return
	}
	if st.already {
		// Another stop is under way: wait for it, as long as it may take.
		t := time.NewTimer(2*s.stopGrace() + 2*s.killWait())
		defer t.Stop()
		select {
		case <-st.done:
		case <-t.C:
		}
		return
	}
	pgid := st.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	st.jail.signal(syscall.SIGTERM)
	grace := time.NewTimer(s.stopGrace())
	defer grace.Stop()
	select {
	case <-st.exited:
	case <-grace.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		st.jail.signal(syscall.SIGKILL)
	}
	// The exit handler takes care of the rest of the jail, within
	// grace plus the kill wait.
	bound := time.NewTimer(s.stopGrace() + 2*s.killWait())
	defer bound.Stop()
	select {
	case <-st.done:
		s.logger.Info("script stopped", "script", s.name)
	case <-bound.C:
		s.logger.Error("script did not stop", "script", s.name, "pid", pgid)
	}
}

// scrape returns the script's current metrics as text.
func (s *script) scrape(ctx context.Context) ([]byte, error) {
	switch s.kind {
	case KindExec:
		s.mu.Lock()
		b, berr := s.block, s.blockErr
		s.mu.Unlock()
		if berr != nil {
			return nil, berr
		}
		if b == nil {
			return nil, errStarting
		}
		return b, nil
	case KindBpftrace:
		return s.scrapeBpftrace(ctx)
	case KindStap:
		return s.scrapeStap()
	}
	return nil, fmt.Errorf("unknown kind %q", s.kind)
}

// rateLimited logs at most burst stderr lines per script per interval.
type rateLimited struct {
	mu     sync.Mutex
	window time.Time
	n      int
	burst  int
}

func (r *rateLimited) log(l *slog.Logger, name, line string) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.window) > 10*time.Second {
		if r.n > r.burst {
			l.Warn("script stderr lines suppressed", "script", name, "count", r.n-r.burst)
		}
		r.window, r.n = now, 0
	}
	r.n++
	n := r.n
	r.mu.Unlock()
	if n <= r.burst {
		l.Warn("script stderr", "script", name, "line", line)
	}
}
