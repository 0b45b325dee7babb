package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

var (
	loadDuration = flag.Duration("ingest.load-duration", 15*time.Second, "how long TestIngestLoad pushes")
	// The bound: twice the default --ingest.max-inflight-bytes (the Go
	// heap grows to twice what is live before collecting) plus 256 MiB
	// for the runtime, the embedded BPF programs and what is not charged.
	loadRSSBound = flag.Int64("ingest.load-rss-mib", 2*128+256, "RSS (MiB) the exporter must stay under in TestIngestLoad")
)

// TestIngestLoad runs the static binary with its default bounds and has 50
// parallel pushers send a mix of valid, huge, compressed (bombs too),
// malformed and slow bodies to /ingest while /metrics is scraped. The
// exporter's RSS must stay under -ingest.load-rss-mib, no answer may be a
// 5xx other than 503 with Retry-After, and every scrape must succeed with
// counters that never decrease. Longer: -ingest.load-duration=60s.
func TestIngestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	dir := t.TempDir()
	bin := binaryPath
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(`metrics-export-rules:
  load_total:
    expr: 'load.cpu'
  load_slow_by_env:
    expr: 'load.cpu'
    node: 'main;slow'
    group_by: [env]
recording_rules:
  - metric_name: load_rec_cpu_nanoseconds
    matchers: ['{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name="load"}']
    group_by: [env]
    stacktrace_filter: {function_name: {function_name: slow}}
`), 0o644)
	addr := freePort(t)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--rules.file="+rulesFile, "--log.level=error",
		"--ingest.body-timeout=10s")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("exporter did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	startRSS := testkit.StatusKiB(t, cmd.Process.Pid, "VmRSS:")

	bodies := loadBodies(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var (
		mu      sync.Mutex
		codes   = map[string]int{}
		bad     []string
		pushes  atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		maxRSS  atomic.Int64
		scrapes atomic.Int64
	)
	firstMsg := map[string]string{}
	record := func(kind string, code int, hdr http.Header, msg string) {
		mu.Lock()
		defer mu.Unlock()
		key := kind + " " + strconv.Itoa(code)
		codes[key]++
		if _, ok := firstMsg[key]; !ok {
			firstMsg[key] = strings.TrimSpace(msg)
		}
		if code >= 500 && !(code == 503 && hdr.Get("Retry-After") != "") || code == 429 && hdr.Get("Retry-After") == "" {
			bad = append(bad, fmt.Sprintf("%s: %d", kind, code))
		}
	}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				b := bodies[rng.IntN(len(bodies))]
				if b.kind == "slow" {
					code, hdr := slowPush(addr, b)
					record(b.kind, code, hdr, "")
					pushes.Add(1)
					continue
				}
				query := strings.ReplaceAll(b.query, "ENV", strconv.Itoa(rng.IntN(40)))
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/ingest?"+query, bytes.NewReader(b.body))
				for k, v := range b.hdr {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					// The server may close a connection it answered early
					// (413, 503) while the client is still sending.
					record(b.kind, -1, nil, err.Error())
					continue
				}
				msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				record(b.kind, resp.StatusCode, resp.Header, string(msg))
				pushes.Add(1)
			}
		}(i)
	}
	wg.Add(2)
	go func() { // RSS sampler
		defer wg.Done()
		for {
			if v := testkit.StatusKiB(t, cmd.Process.Pid, "VmRSS:"); v > maxRSS.Load() {
				maxRSS.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	scrapeClient := &http.Client{Timeout: 30 * time.Second}
	var scrapeTimes []time.Duration
	var scrapeErrs []string
	var maxScrape time.Duration
	go func() { // scraper: /metrics must answer throughout, counters only go up
		defer wg.Done()
		last := map[string]float64{}
		for {
			start := time.Now()
			resp, err := scrapeClient.Get("http://" + addr + "/metrics")
			if err != nil {
				scrapeErrs = append(scrapeErrs, err.Error())
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					scrapeErrs = append(scrapeErrs, fmt.Sprintf("/metrics %d", resp.StatusCode))
				}
				for _, line := range strings.Split(string(body), "\n") {
					if !strings.HasPrefix(line, "load_") {
						continue
					}
					i := strings.LastIndexByte(line, ' ')
					v, err := strconv.ParseFloat(line[i+1:], 64)
					if err != nil {
						scrapeErrs = append(scrapeErrs, "unparsable "+line)
						continue
					}
					if v < last[line[:i]] {
						scrapeErrs = append(scrapeErrs, fmt.Sprintf("%s went down from %v to %v", line[:i], last[line[:i]], v))
					}
					last[line[:i]] = v
				}
				scrapes.Add(1)
				scrapeTimes = append(scrapeTimes, time.Since(start))
				if d := time.Since(start); d > maxScrape {
					maxScrape = d
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	time.Sleep(*loadDuration)
	close(stop)
	cancel() // pushes in flight end now
	wg.Wait()
	hwm := testkit.StatusKiB(t, cmd.Process.Pid, "VmHWM:")

	keys := make([]string, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var summary strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&summary, "  %-16s %6d  %.90s\n", k, codes[k], firstMsg[k])
	}
	sort.Slice(scrapeTimes, func(i, j int) bool { return scrapeTimes[i] < scrapeTimes[j] })
	var median time.Duration
	if len(scrapeTimes) > 0 {
		median = scrapeTimes[len(scrapeTimes)/2]
	}
	t.Logf("%v, 50 pushers: %d pushes answered, %d scrapes (median %v, slowest %v); RSS %d MiB at start, peak %d MiB sampled, VmHWM %d MiB\n%s",
		*loadDuration, pushes.Load(), scrapes.Load(), median.Round(time.Millisecond), maxScrape.Round(time.Millisecond), startRSS>>10, maxRSS.Load()>>10, hwm>>10, summary.String())
	if len(bad) > 0 {
		t.Errorf("%d answers were 5xx other than 503 with Retry-After: %v", len(bad), bad[:min(len(bad), 10)])
	}
	if len(scrapeErrs) > 0 || scrapes.Load() == 0 {
		t.Errorf("/metrics failed %d times: %v", len(scrapeErrs), scrapeErrs[:min(len(scrapeErrs), 10)])
	}
	if hwm>>10 > *loadRSSBound {
		t.Errorf("peak RSS %d MiB, bound %d MiB", hwm>>10, *loadRSSBound)
	}
	for _, k := range []string{"valid-folded 200", "valid-pprof 200", "valid-gzip 200", "malformed 400", "slow 408"} {
		if codes[k] == 0 {
			t.Errorf("no %q answers: the mix did not exercise it", k)
		}
	}
	for _, k := range []string{"bomb 200", "huge 200", "malformed 200", "slow 200"} {
		if codes[k] != 0 {
			t.Errorf("%d %q answers", codes[k], k)
		}
	}
}

type loadBody struct {
	kind, query string
	hdr         map[string]string
	body        []byte
}

func loadBodies(t *testing.T) []loadBody {
	var folded strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&folded, "main;slow;f%d %d\nmain;fast;f%d %d\n", i, i+1, i, 2*i+1)
	}
	var huge bytes.Buffer // just under 16 MiB of distinct short stacks
	for i := 0; huge.Len() < 16<<20-64; i++ {
		fmt.Fprintf(&huge, "main;%x 1\n", i)
	}
	var bomb bytes.Buffer // 512 MiB of zeros in about 0.5 MiB
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for i := 0; i < 512; i++ {
		zw.Write(zeros)
	}
	zw.Close()
	var gzFolded bytes.Buffer
	zw = gzip.NewWriter(&gzFolded)
	zw.Write([]byte(folded.String()))
	zw.Close()
	return []loadBody{
		{kind: "valid-folded", query: "name=load.cpu{env=eENV}&sampleRate=100", body: []byte(folded.String())},
		{kind: "valid-folded", query: "name=load.cpu{env=eENV}&sampleRate=100&format=lines", body: []byte("main;slow\nmain;slow\nmain;fast\n")},
		{kind: "valid-pprof", query: "name=load{env=eENV}&format=pprof", body: loadPprof(t)},
		{kind: "valid-gzip", query: "name=load.cpu{env=eENV}", hdr: map[string]string{"Content-Encoding": "gzip"}, body: gzFolded.Bytes()},
		{kind: "huge", query: "name=load.cpu{env=huge}", body: huge.Bytes()},
		{kind: "bomb", query: "name=load&format=pprof", body: bomb.Bytes()},
		{kind: "bomb", query: "name=load.cpu", hdr: map[string]string{"Content-Encoding": "gzip"}, body: bomb.Bytes()},
		{kind: "malformed", query: "name=load.cpu{env=a%FFb}", body: []byte("main;slow 1")},
		{kind: "malformed", query: "name=load.cpu", body: []byte("main;slow -5\n")},
		{kind: "malformed", query: "name=load.cpu", body: []byte("main;slow 18446744073709551615\nmain;x 1\n")},
		{kind: "malformed", query: "name=load&format=pprof", body: []byte("\x0a\xff\xff\xff\xff\x0fgarbage")},
		{kind: "slow", query: "name=load.cpu{env=slow}"},
	}
}

func loadPprof(t *testing.T) []byte {
	mainFn := &profile.Function{ID: 1, Name: "main"}
	slowFn := &profile.Function{ID: 2, Name: "slow"}
	lMain := &profile.Location{ID: 1, Line: []profile.Line{{Function: mainFn}}}
	lSlow := &profile.Location{ID: 2, Line: []profile.Line{{Function: slowFn}}}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 10_000_000,
		Sample:   []*profile.Sample{{Location: []*profile.Location{lSlow, lMain}, Value: []int64{3, 30_000_000}}},
		Location: []*profile.Location{lMain, lSlow}, Function: []*profile.Function{mainFn, slowFn},
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// slowPush announces 1 MiB and sends a byte every 2 s: the body
// deadline must end it.
func slowPush(addr string, b loadBody) (int, http.Header) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return -1, nil
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /ingest?%s HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n", b.query)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Second):
				if _, err := conn.Write([]byte("m")); err != nil {
					return
				}
			}
		}
	}()
	defer close(done)
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return -1, nil
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}
