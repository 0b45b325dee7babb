package web

import (
	"container/list"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxConnections is --web.max-connections' default.
const DefaultMaxConnections = 512

// MaxHeaderBytes bounds a request's line and headers (net/http's default
// is 1 MiB). A scrape, a push or a browser sends a few hundred bytes;
// each connection reading headers may hold this much, so it is the
// bound's other factor beside the number of connections.
const MaxHeaderBytes = 64 << 10

// connLimiter keeps at most max connections open. A connection beyond
// it closes the one that has waited longest without a request in a
// handler: one that has sent nothing yet, is still sending its headers
// (a slowloris) or idles between keep-alive requests. When every
// connection is in a handler, the newcomer is closed instead. So clients
// holding connections open cannot exhaust the process's file descriptors
// (BPF maps, programs and scripts need them too) or its memory, and a
// scrape arriving among them still gets a connection: a waiting one is
// closed for it.
//
// It works through http.Server.ConnState, which reports a connection
// new when accepted, active once a request's headers are read, and idle
// after its response: new and idle connections are the waiting ones.
type connLimiter struct {
	max int

	mu sync.Mutex
	// conns are the open connections; the element of a waiting one is
	// in waiting, oldest first.
	conns   map[net.Conn]*list.Element
	waiting *list.List

	open    prometheus.GaugeFunc
	dropped *prometheus.CounterVec
}

func newConnLimiter(max int) *connLimiter {
	l := &connLimiter{max: max, conns: map[net.Conn]*list.Element{}, waiting: list.New()}
	l.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "probe_exporter_http_connections",
		Help: "HTTP connections open (--web.max-connections bounds them).",
	}, func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(len(l.conns))
	})
	l.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "probe_exporter_http_connections_closed_total",
		Help: "HTTP connections closed by the server to stay within --web.max-connections: the one waiting longest without a request (reason=\"waiting\"), or the newcomer when every connection is serving a request (reason=\"all_busy\").",
	}, []string{"reason"})
	l.dropped.WithLabelValues("waiting")
	l.dropped.WithLabelValues("all_busy")
	return l
}

// Describe and Collect make the limiter a collector of its metrics.
func (l *connLimiter) Describe(ch chan<- *prometheus.Desc) {
	l.open.Describe(ch)
	l.dropped.Describe(ch)
}

func (l *connLimiter) Collect(ch chan<- prometheus.Metric) {
	l.open.Collect(ch)
	l.dropped.Collect(ch)
}

// connState is the server's ConnState hook.
func (l *connLimiter) connState(c net.Conn, state http.ConnState) {
	var closing net.Conn
	l.mu.Lock()
	switch state {
	case http.StateNew:
		if len(l.conns) >= l.max {
			if e := l.waiting.Front(); e != nil {
				closing = e.Value.(net.Conn)
				l.forget(closing)
				l.dropped.WithLabelValues("waiting").Inc()
			} else {
				closing = c
				l.dropped.WithLabelValues("all_busy").Inc()
				break
			}
		}
		l.conns[c] = l.waiting.PushBack(c)
	case http.StateIdle:
		if e, ok := l.conns[c]; ok {
			if e != nil {
				l.waiting.Remove(e)
			}
			l.conns[c] = l.waiting.PushBack(c)
		}
	case http.StateActive:
		if e, ok := l.conns[c]; ok && e != nil {
			l.waiting.Remove(e)
			l.conns[c] = nil
		}
	case http.StateClosed, http.StateHijacked:
		l.forget(c)
	}
	l.mu.Unlock()
	if closing != nil {
		// Its goroutine sees the read fail and reports it closed. A TLS
		// connection's socket is closed under it: tls.Conn.Close would
		// first send an alert to a peer that may not be reading, and
		// this hook runs in the accepting goroutine.
		if tc, ok := closing.(interface{ NetConn() net.Conn }); ok {
			closing = tc.NetConn()
		}
		closing.Close()
	}
}

// forget drops c from the books; the caller holds mu.
func (l *connLimiter) forget(c net.Conn) {
	if e, ok := l.conns[c]; ok {
		if e != nil {
			l.waiting.Remove(e)
		}
		delete(l.conns, c)
	}
}
