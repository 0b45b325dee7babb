package scripts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
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

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{} // closed when the current process exits
	state      State
	started    time.Time
	lastReq    time.Time
	lastOutput time.Time
	lastErr    string
	restarts   int
	starts     int
	outputErrs int
	ready      chan struct{} // closed at the first output of this run
	block      []byte        // exec: newest complete block
	lines      chan []byte   // bpftrace: map lines after SIGUSR1
	stderr     *rateLimited
	removed    bool
}

func (s *script) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Name: s.name, Kind: s.kind, State: s.state, Restarts: s.restarts, LastError: s.lastErr, LastOutput: s.lastOutput, Autostart: s.autostart}
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

// start launches the process in its own process group; callers hold s.mu.
func (s *script) start() error {
	if s.running() {
		return nil
	}
	cmd, err := s.command()
	if err != nil {
		s.state = StateFailed
		s.lastErr = err.Error()
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = s.opts.Dir
	cmd.Env = append(os.Environ(), "PROBE_EXPORTER_SCRIPT="+s.name)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		s.state = StateFailed
		s.lastErr = err.Error()
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	if s.starts > 0 {
		s.restarts++
	}
	s.starts++
	s.cmd = cmd
	s.state = StateStarting
	s.started = time.Now()
	s.ready = make(chan struct{})
	s.block = nil
	s.lines = make(chan []byte, 1024)
	done := make(chan struct{})
	s.done = done
	ready := s.ready
	lines := s.lines
	var errTail tailBuffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.readStdout(stdout, ready, lines) }()
	go func() { defer wg.Done(); s.readStderr(stderr, &errTail) }()
	go func() {
		wg.Wait()
		err := cmd.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cmd == cmd {
			msg := "exited"
			if err != nil {
				msg = err.Error()
			}
			if t := errTail.String(); t != "" {
				msg += ": " + t
			}
			if s.state != StateIdle {
				s.state = StateFailed
				s.lastErr = msg
				s.logger.Warn("script exited", "script", s.name, "err", msg)
			}
		}
		close(done)
	}()
	s.logger.Info("script started", "script", s.name, "pid", cmd.Process.Pid)
	return nil
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

// readStdout follows the process's output: exec scripts print blocks
// ending with "# EOF"; bpftrace prints JSON lines; systemtap's output goes
// to procfs and stdout is only logged.
func (s *script) readStdout(r io.Reader, ready chan struct{}, lines chan []byte) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), s.opts.MaxOutput)
	var block bytes.Buffer
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
	for sc.Scan() {
		line := sc.Bytes()
		switch s.kind {
		case KindExec:
			if bytes.Equal(bytes.TrimSpace(line), []byte("# EOF")) {
				out := append([]byte(nil), block.Bytes()...)
				block.Reset()
				s.mu.Lock()
				s.block = out
				s.lastOutput = time.Now()
				s.mu.Unlock()
				markReady()
				continue
			}
			if block.Len()+len(line) > s.opts.MaxOutput {
				block.Reset()
				s.logger.Warn("script output block too large; dropped", "script", s.name, "max", s.opts.MaxOutput)
				continue
			}
			block.Write(line)
			block.WriteByte('\n')
		case KindBpftrace:
			if bytes.Contains(line, []byte(`"type": "attached_probes"`)) || bytes.Contains(line, []byte(`"type":"attached_probes"`)) {
				markReady()
				continue
			}
			if bytes.HasPrefix(line, []byte("{")) {
				select {
				case lines <- append([]byte(nil), line...):
				default: // nobody is scraping: drop
				}
			}
		case KindStap:
			s.logger.Debug("script output", "script", s.name, "line", string(line))
		}
	}
	if err := sc.Err(); err != nil {
		s.logger.Warn("reading script output", "script", s.name, "err", err)
	}
}

func (s *script) readStderr(r io.Reader, tail *tailBuffer) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		tail.add(sc.Text())
		s.stderr.log(s.logger, s.name, sc.Text())
	}
}

// stop ends the whole process group: SIGTERM, then SIGKILL after grace.
func (s *script) stop(grace time.Duration) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.state = StateIdle
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil || done == nil {
		return
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	// Children that outlived their parent in the group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	s.logger.Info("script stopped", "script", s.name)
}

// scrape returns the script's current metrics as text.
func (s *script) scrape(ctx context.Context) ([]byte, error) {
	switch s.kind {
	case KindExec:
		s.mu.Lock()
		b := s.block
		s.mu.Unlock()
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

// scrapeBpftrace asks bpftrace to print its maps (SIGUSR1) and reads them
// until output pauses.
func (s *script) scrapeBpftrace(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	cmd, lines := s.cmd, s.lines
	s.mu.Unlock()
	if cmd == nil || lines == nil {
		return nil, errStarting
	}
	// Drop anything left from an earlier, interrupted dump.
	for len(lines) > 0 {
		<-lines
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return nil, fmt.Errorf("signalling bpftrace: %w", err)
	}
	var got [][]byte
	first := time.NewTimer(s.opts.StartWait)
	defer first.Stop()
	select {
	case l := <-lines:
		got = append(got, l)
	case <-first.C:
		return nil, errStarting // nothing in any map yet
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	const quiet = 30 * time.Millisecond
	for {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-time.After(quiet):
			fams, err := bpftraceFamilies(got, s.bt)
			if err != nil {
				return nil, err
			}
			s.mu.Lock()
			s.lastOutput = time.Now()
			s.mu.Unlock()
			return encodeText(fams)
		}
	}
}

// tailBuffer keeps the last lines of stderr for error messages.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailBuffer) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, l)
	if len(t.lines) > 5 {
		t.lines = t.lines[1:]
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.Join(bytesOf(t.lines), []byte(" | ")))
}

func bytesOf(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
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
