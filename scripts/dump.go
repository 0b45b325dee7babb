package scripts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// btMapTypes are the line types bpftrace -f json prints for maps, which
// is all a SIGUSR1 dump prints.
var btMapTypes = map[string]bool{"map": true, "hist": true, "lhist": true, "stats": true}

// btLineType is the "type" of a bpftrace JSON line, "" if it has none.
func btLineType(line []byte) string {
	for _, p := range []string{`{"type": "`, `{"type":"`} {
		if rest, ok := bytes.CutPrefix(line, []byte(p)); ok {
			if i := bytes.IndexByte(rest, '"'); i >= 0 {
				return string(rest[:i])
			}
		}
	}
	return ""
}

// btCollector gathers the map lines of one run's dump in progress; lines
// outside a dump (bpftrace's own dump at exit) are dropped.
type btCollector struct {
	mu      sync.Mutex
	active  bool
	lines   [][]byte
	size    int
	over    bool
	last    time.Time       // when the newest map line came
	arrived int             // map lines seen in this dump, over the limit too
	settled bool            // bpftrace of this run has reached its event loop
	skipped map[string]bool // maps left out, logged once per run
}

// firstSkip tells whether map name is left out for the first time in
// this run.
func (c *btCollector) firstSkip(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.skipped[name] {
		return false
	}
	if c.skipped == nil {
		c.skipped = map[string]bool{}
	}
	if len(c.skipped) >= 1024 {
		return false // bounded: a script has few maps
	}
	c.skipped[name] = true
	return true
}

func (c *btCollector) isSettled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settled
}

func (c *btCollector) settle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settled = true
}

func (c *btCollector) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active, c.lines, c.size, c.over, c.arrived = true, nil, 0, false, 0
}

func (c *btCollector) add(line []byte, tooLong bool, max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active {
		return
	}
	c.last = time.Now()
	c.arrived++
	if c.over {
		return
	}
	if tooLong || c.size+len(line) > max {
		c.over, c.lines = true, nil
		return
	}
	c.lines = append(c.lines, append([]byte(nil), line...))
	c.size += len(line)
}

// progress is how many lines came and when the last did.
func (c *btCollector) progress() (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arrived, c.last
}

func (c *btCollector) end() ([][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines, over := c.lines, c.over
	c.active, c.lines = false, nil
	return lines, over
}

// dumpCall is one SIGUSR1 dump; every request arriving while it runs
// waits for it and gets its whole answer.
type dumpCall struct {
	cmd  *exec.Cmd // the run it dumps
	done chan struct{}
	out  []byte
	err  error
}

// Dump timing: a dump is over when no map line came for dumpQuiet and
// bpftrace is idle again (asleep, signal handled, its stdout pipe
// drained); with no line at all it is an empty dump once dumpEmpty has
// passed (longer than bpftrace's poll interval, so that a signal caught
// just before bpftrace went to sleep has been acted on).
const (
	dumpQuiet = 30 * time.Millisecond
	dumpEmpty = 250 * time.Millisecond
	dumpPoll  = 10 * time.Millisecond
)

// scrapeBpftrace answers from one dump of bpftrace's maps, shared by all
// requests that arrive while it runs.
func (s *script) scrapeBpftrace(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	cmd, ready, stdout, collector, exited := s.cmd, s.ready, s.stdout, s.collector, s.exited
	if cmd == nil || !s.running() {
		s.mu.Unlock()
		return nil, errStarting
	}
	select {
	case <-ready:
	default:
		s.mu.Unlock()
		return nil, errStarting // not attached yet
	}
	call := s.dump
	if call == nil || call.cmd != cmd {
		call = &dumpCall{cmd: cmd, done: make(chan struct{})}
		s.dump = call
		go func() {
			call.out, call.err = s.dumpBpftrace(cmd.Process.Pid, stdout, collector, exited)
			s.mu.Lock()
			if s.dump == call {
				s.dump = nil
			}
			if call.err == nil {
				s.lastOutput, s.lastOutputSize = time.Now(), len(call.out)
			}
			s.mu.Unlock()
			close(call.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-call.done:
		return call.out, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dumpBpftrace signals bpftrace and collects the dump it prints; at most
// max(StartWait, 5s).
func (s *script) dumpBpftrace(pid int, stdout *os.File, c *btCollector, exited chan struct{}) ([]byte, error) {
	deadline := time.Now().Add(max(s.opts.StartWait, 5*time.Second))
	if !c.isSettled() {
		// bpftrace says it attaches before it has attached everything
		// and run BEGIN: the first dump waits until it idles in its
		// event loop, so that it is not taken before BEGIN.
		// A busy tool (opensnoop.bt on a busy machine) may never idle:
		// its event output says it is in its event loop just as well.
		for idle := 0; idle < 3 && !c.isSettled(); {
			if closed(exited) {
				return nil, errExited
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("bpftrace did not settle after attaching within %v", max(s.opts.StartWait, 5*time.Second))
			}
			time.Sleep(dumpPoll)
			if btIdle(hostProc, pid, stdout) {
				idle++
			} else {
				idle = 0
			}
		}
		c.settle()
	}
	c.begin()
	sent := time.Now()
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		c.end()
		if closed(exited) {
			return nil, errExited
		}
		return nil, fmt.Errorf("signalling bpftrace: %w", err)
	}
	for {
		time.Sleep(dumpPoll)
		if closed(exited) {
			// What it printed was its dump at exit, if anything:
			// the answer is why it exited.
			c.end()
			return nil, errExited
		}
		n, last := c.progress()
		now := time.Now()
		quietFrom := sent
		if n > 0 {
			quietFrom = last
		}
		if (n > 0 || now.Sub(sent) >= dumpEmpty) && now.Sub(quietFrom) >= dumpQuiet && btIdle(hostProc, pid, stdout) {
			break
		}
		if now.After(deadline) {
			c.end()
			return nil, fmt.Errorf("bpftrace did not finish printing its maps within %v", deadline.Sub(sent).Round(time.Millisecond))
		}
	}
	lines, over := c.end()
	if over {
		return nil, errTooLarge{s.opts.MaxOutput}
	}
	fams, skipped, err := bpftraceFamilies(lines, s.bt)
	if err != nil {
		return nil, err
	}
	for _, sk := range skipped {
		if c.firstSkip(sk.name) {
			s.logger.Warn("bpftrace map left out: its values are not numbers", "script", s.name, "map", sk.name, "reason", sk.reason)
		}
	}
	return encodeText(fams)
}

// errExited is a dump asked of a bpftrace that exited meanwhile; the
// request is answered with the run's own reason.
var errExited = errors.New("bpftrace exited")

// btIdle tells that bpftrace has nothing more to print for now: SIGUSR1
// is not pending, no thread is running, and nothing is left unread in
// its stdout pipe. When /proc cannot tell, the quiet period alone
// decides.
func btIdle(procRoot string, pid int, stdout *os.File) bool {
	if stdout != nil {
		if rc, err := stdout.SyscallConn(); err == nil {
			n := 0
			_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
			if n > 0 {
				return false
			}
		}
	}
	base := filepath.Join(procRoot, strconv.Itoa(pid))
	if status, err := os.ReadFile(filepath.Join(base, "status")); err == nil {
		usr1 := uint64(1) << (uint(syscall.SIGUSR1) - 1)
		for _, l := range strings.Split(string(status), "\n") {
			for _, f := range []string{"ShdPnd:", "SigPnd:"} {
				if v, ok := strings.CutPrefix(l, f); ok {
					if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&usr1 != 0 {
						return false
					}
				}
			}
		}
	}
	tasks, err := os.ReadDir(filepath.Join(base, "task"))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		stat, err := os.ReadFile(filepath.Join(base, "task", t.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) STATE ...; comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			if st := stat[i+2]; st == 'R' || st == 'D' {
				return false
			}
		}
	}
	return true
}
