package ingest

// lease is the share of MaxInflightBytes one push holds.
type lease struct {
	h *Handler
	n int64
}

func (l *lease) take(n int64) error {
	if n <= 0 {
		return nil
	}
	if l.n+n > l.h.opts.MaxInflightBytes {
		// Alone over the bound: waiting would not help.
		return errTooBigForBudget
	}
	if l.h.inflight.Add(n) > l.h.opts.MaxInflightBytes {
		l.h.inflight.Add(-n)
		return errBusy
	}
	l.n += n
	return nil
}

func (l *lease) release() {
	l.h.inflight.Add(-l.n)
	l.n = 0
}
