package scripts

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// One-shot executables are what node_exporter's textfile-collector
// scripts and ricoberger/script_exporter's scripts are: a program that
// prints Prometheus text once and exits 0. They are told from the
// long-running form (blocks ending in "# EOF", stap-exporter's) by what a
// run does, never by configuration: a run that exits 0 makes the script
// one-shot. A one-shot script then runs once per request (concurrent
// requests share a run), within its timeout, and a result is reused for
// Options.MinInterval.

// runResult is the outcome of one one-shot run.
type runResult struct {
	out    []byte // its output, not yet validated
	err    error  // why it failed: an exit status, a timeout, a limit
	status int    // the HTTP status of a failure
	at     time.Time
}

// errTimeout is a one-shot run killed for running over its timeout.
type errTimeout struct{ d time.Duration }

func (e errTimeout) Error() string {
	return fmt.Sprintf("did not exit within its timeout of %v (--scripts.timeout): killed with everything it started", e.d)
}

// timeout is how long one run of the script may take.
func (s *script) timeout() time.Duration {
	if d, ok := s.opts.Timeouts[s.name]; ok && d > 0 {
		return d
	}
	return s.opts.Timeout
}

// exitedWith records how a run ended; callers hold s.mu and checked that
// cmd is the current run. An executable that exits 0 is one-shot: what
// it printed after its last "# EOF" (or, when nothing followed it, its
// last block) is its output.
func (s *script) exitedWith(cmd *exec.Cmd, err error, stderr *stderrLines) {
	now := time.Now()
	if s.kind == KindExec && cmd != nil && s.timedOut == cmd {
		s.timedOut = nil
		s.result = &runResult{err: errTimeout{s.timeout()}, status: http.StatusGatewayTimeout, at: now}
		s.state = StateFailed
		s.lastErr = s.result.err.Error()
		s.logger.Warn("one-shot script timed out", "script", s.name, "timeout", s.timeout())
		return
	}
	if s.kind == KindExec && err == nil && s.state != StateIdle {
		s.oneshot = true
		res := &runResult{at: now}
		switch {
		case s.trailErr != nil:
			res.err, res.status = s.trailErr, http.StatusInternalServerError
		case len(bytes.TrimSpace(s.trailing)) > 0 || s.block == nil && s.blockErr == nil:
			res.out = s.trailing
		case s.blockErr != nil:
			res.err, res.status = s.blockErr, http.StatusInternalServerError
		default:
			res.out = s.block
		}
		s.result = res
		if res.err != nil {
			s.state, s.lastErr = StateFailed, res.err.Error()
			s.outputErrs++
		} else {
			s.state, s.lastErr = StateIdle, ""
			s.lastOutput, s.lastOutputSize = now, len(res.out)
		}
		return
	}
	msg := "exited"
	if err != nil {
		msg = err.Error()
	}
	if t := stderr.String(); t != "" {
		msg += ": " + t
	}
	if s.state == StateIdle {
		return // stopped by the exporter: not a failure
	}
	s.state = StateFailed
	s.lastErr = msg
	if s.kind == KindExec {
		s.result = &runResult{err: errors.New(msg), status: http.StatusInternalServerError, at: now}
	}
	s.logger.Warn("script exited", "script", s.name, "err", msg)
}

// watchTimeout kills a one-shot run that is still running after the
// script's timeout, with everything it started.
func (s *script) watchTimeout(cmd *exec.Cmd, exited chan struct{}) {
	t := time.NewTimer(s.timeout())
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-t.C:
	}
	s.mu.Lock()
	if s.cmd != cmd || !s.running() || s.stopping {
		s.mu.Unlock()
		return
	}
	s.timedOut = cmd
	st := &stopping{cmd: s.cmd, jail: s.jail, done: s.done, exited: s.exited}
	s.stopping = true
	s.mu.Unlock()
	s.finishStop(st)
}

// freshResult is the one-shot result a request may be answered with
// without a run: the newest one of an autostart script (which runs on
// its own), or a successful one younger than MinInterval. Callers hold
// s.mu.
func (s *script) freshResult() *runResult {
	r := s.result
	if s.kind != KindExec || !s.oneshot || r == nil {
		return nil
	}
	if s.autostart || r.err == nil && time.Since(r.at) < s.opts.MinInterval {
		return r
	}
	return nil
}

// writeResult answers with a one-shot result, validated as every
// script's output is.
func (sup *Supervisor) writeResult(w http.ResponseWriter, sc *script, r *runResult) {
	if r.err != nil {
		status := r.status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		http.Error(w, fmt.Sprintf("%s failed: %v", sc.name, r.err), status)
		return
	}
	out, err := sc.validated(r.out)
	if err != nil {
		sc.mu.Lock()
		sc.outputErrs++
		sc.lastErr = err.Error()
		sc.mu.Unlock()
		http.Error(w, fmt.Sprintf("%s: bad output: %v", sc.name, err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(out)
}

// stderrLines keeps the first and the last lines a run wrote to stderr,
// each cut short, for the messages that say why it failed: a one-shot
// script's reason is usually at the start, a dying daemon's at the end.
type stderrLines struct {
	mu    sync.Mutex
	head  []string
	tail  []string
	total int
}

const (
	stderrKeep    = 5
	stderrLineMax = 512
)

func (t *stderrLines) add(l string) {
	if len(l) > stderrLineMax {
		l = strings.ToValidUTF8(l[:stderrLineMax], "") + "..."
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	if len(t.head) < stderrKeep {
		t.head = append(t.head, l)
		return
	}
	t.tail = append(t.tail, l)
	if len(t.tail) > stderrKeep {
		t.tail = t.tail[1:]
	}
}

// String is the kept lines joined by " | ", with "..." where lines were
// left out.
func (t *stderrLines) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	parts := append([]string(nil), t.head...)
	if t.total > len(t.head)+len(t.tail) {
		parts = append(parts, "...")
	}
	parts = append(parts, t.tail...)
	return strings.Join(parts, " | ")
}
