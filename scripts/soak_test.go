package scripts

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// The soak runs 15 s by default; longer with
//
//	go test -run TestSoak ./scripts -args -soak=60s
var soakFor = flag.Duration("soak", 15*time.Second, "how long TestSoak runs")

// TestSoak: 20 scripts (executables, some with escaped children and
// some slow to start, and bpftrace scripts), keepalive 1 s, random
// parallel GETs with random gaps. No request hangs (each is answered
// within the start wait plus a second, with a scheduling margin), every
// 200 is whole and valid, nothing is left running afterwards, and fds and
// goroutines come back to where they were.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test")
	}
	dir := t.TempDir()
	type target struct {
		name string
		want []string // lines every 200 holds
	}
	var targets []target
	bt := 0
	if _, err := exec.LookPath("bpftrace"); err == nil && os.Geteuid() == 0 {
		bt = 4
	}
	for i := 0; i < 20-bt; i++ {
		name := fmt.Sprintf("s%02d.sh", i)
		var pre string
		switch i % 4 {
		case 1: // leaves a child behind that ignores SIGTERM
			pre = "setsid sh -c 'trap \"\" TERM; while :; do sleep 1; done' &\n"
		case 2: // slow to start
			pre = "sleep 0.5\n"
		case 3: // ignores SIGTERM itself
			pre = "trap '' TERM\n"
		}
		writeScript(t, dir, name, fmt.Sprintf("#!/bin/sh\n%si=0\nwhile true; do i=$((i+1)); echo '# TYPE soak_value gauge'; echo 'soak_value{script=\"%d\"} %d'; echo \"soak_seq $i\"; echo '# EOF'; sleep 0.1; done\n", pre, i, i), true)
		targets = append(targets, target{name, []string{fmt.Sprintf("soak_value{script=\"%d\"} %d\n", i, i), "soak_seq "}})
	}
	for i := 0; i < bt; i++ {
		name := fmt.Sprintf("b%02d.bt", i)
		writeScript(t, dir, name, eightMaps, false)
		targets = append(targets, target{name, wantEightMaps})
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	client := &http.Client{Transport: tr}
	baseFDs, baseG := countFDs(), runtime.NumGoroutine()

	const startWait = 3 * time.Second
	s, srv := serveNoCleanup(t, Options{Dir: dir, Keepalive: time.Second, StartWait: startWait, StopGrace: 500 * time.Millisecond, MaxRunning: 64})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { s.Run(ctx); close(runDone) }()

	var (
		mu          sync.Mutex
		latencies   []time.Duration
		codes       = map[int]int{}
		unavailable = map[string]int{}
		failures    []string
		peakFDs     int
		peakG       int
	)
	fail := func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(f, a...))
		}
	}
	deadline := time.Now().Add(*soakFor)
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				tg := targets[rand.IntN(len(targets))]
				rctx, rcancel := context.WithTimeout(context.Background(), startWait+time.Second+10*time.Second)
				req, _ := http.NewRequestWithContext(rctx, "GET", srv.URL+"/"+tg.name, nil)
				start := time.Now()
				resp, err := client.Do(req)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				took := time.Since(start)
				rcancel()
				if err != nil {
					fail("%s: %v after %v", tg.name, err, took)
					continue
				}
				mu.Lock()
				latencies = append(latencies, took)
				codes[resp.StatusCode]++
				mu.Unlock()
				switch resp.StatusCode {
				case http.StatusOK:
					for _, w := range tg.want {
						if !strings.Contains("\n"+string(body), w) {
							fail("%s: 200 without %q: %.200q", tg.name, w, body)
						}
					}
					if _, err := validate(body); err != nil {
						fail("%s: invalid exposition served: %v", tg.name, err)
					}
				case http.StatusServiceUnavailable: // starting or stopping
					why := string(body)
					if i := strings.Index(why, ": "); i >= 0 {
						why = why[i+2:]
					} else if f := strings.Fields(why); len(f) > 1 {
						why = strings.Join(f[1:], " ")
					}
					mu.Lock()
					unavailable[tg.name+": "+strings.TrimSpace(why)]++
					mu.Unlock()
				default:
					fail("%s: %d %.200q", tg.name, resp.StatusCode, body)
				}
				time.Sleep(time.Duration(rand.Int64N(int64(1500 * time.Millisecond))))
			}
		}()
	}
	// The state metrics stay collectable, and fds and goroutines are
	// sampled meanwhile.
	wg.Add(1)
	go func() {
		defer wg.Done()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(s)
		for time.Now().Before(deadline) {
			if _, err := reg.Gather(); err != nil {
				fail("gather: %v", err)
			}
			mu.Lock()
			peakFDs, peakG = max(peakFDs, countFDs()), max(peakG, runtime.NumGoroutine())
			mu.Unlock()
			time.Sleep(500 * time.Millisecond)
		}
	}()
	wg.Wait()

	srv.CloseClientConnections()
	srv.Close()
	tr.CloseIdleConnections()
	stopStart := time.Now()
	cancel()
	select {
	case <-runDone:
	case <-time.After(hangLimit):
		t.Fatal("Run did not return")
	}
	stopTook := time.Since(stopStart)

	for _, f := range failures {
		t.Error(f)
	}
	if left := markedLeftovers(); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
	var restarts int
	for _, st := range s.Status() {
		restarts += st.Restarts
	}
	testkit.Eventually(t, "fds and goroutines to come back", func() bool {
		return countFDs() <= baseFDs+2 && runtime.NumGoroutine() <= baseG+3
	})
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Round(time.Millisecond)
	}
	t.Logf("503 answers: %v", unavailable)
	t.Logf("soak %v: %d scripts (%d bpftrace), %d requests %v, restarts %d; latency p50 %v p99 %v max %v; fds %d -> peak %d -> %d; goroutines %d -> peak %d -> %d; shutdown %v",
		*soakFor, len(targets), bt, len(latencies), codes, restarts, pct(0.5), pct(0.99), pct(1), baseFDs, peakFDs, countFDs(), baseG, peakG, runtime.NumGoroutine(), stopTook.Round(time.Millisecond))
	if maxLat := pct(1); maxLat > startWait+time.Second+3*time.Second {
		t.Errorf("slowest answer took %v, beyond the start wait plus a second (%v) and a margin", maxLat, startWait+time.Second)
	}
}

// countFDs counts this process's open file descriptors.
func countFDs() int {
	entries, _ := os.ReadDir(filepath.Join("/proc", "self", "fd"))
	return len(entries)
}
