package safeopen

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

// Runner runs reads of untrusted files off the callers' paths: each in a
// goroutine of its own, waited for until a deadline. A read still blocked
// then (a FUSE or NFS server that does not answer) cannot be interrupted:
// it goes on, holding one of a bounded number of slots, and its caller
// goes on without it. With every slot held by stuck reads, Do refuses at
// once, so stuck reads never pile up threads.
type Runner struct {
	timeout time.Duration
	slots   chan struct{}
}

// NewRunner runs at most slots reads at once, each waited for at most
// timeout.
func NewRunner(slots int, timeout time.Duration) *Runner {
	if slots < 1 {
		slots = 1
	}
	return &Runner{timeout: timeout, slots: make(chan struct{}, slots)}
}

// Do runs fn, reading the file at path, and returns its error; or a
// Timeout error when fn has not returned within the deadline or before ctx
// ends (fn then goes on alone: what it does after must not need its
// caller); or a Busy error when every slot is held. A panic in fn is
// recovered and returned as an error.
func (r *Runner) Do(ctx context.Context, path string, fn func() error) error {
	select {
	case r.slots <- struct{}{}:
	default:
		return refuse(path, Busy, "%d reads of untrusted files already stuck", cap(r.slots))
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-r.slots }()
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("%s: panic reading it: %v\n%s", path, p, debug.Stack())
			}
		}()
		done <- fn()
	}()
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return refuse(path, Timeout, "not read within %s", r.timeout)
	case <-ctx.Done():
		return refuse(path, Timeout, "%w", ctx.Err())
	}
}
