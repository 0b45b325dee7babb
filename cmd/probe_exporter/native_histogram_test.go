package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// writeSizes is the workload of TestNativeHistograms: write() calls to
// /dev/null by the calling thread only, pinned to the CPU in PROBE_E2E_CPU,
// of the sizes in PROBE_E2E_WRITES ("SIZExCOUNT,..."). It returns the exit
// code.
func writeSizes() int {
	fail := func(args ...any) int {
		fmt.Fprintln(os.Stderr, args...)
		return 3
	}
	cpu, err := strconv.Atoi(os.Getenv("PROBE_E2E_CPU"))
	if err != nil {
		return fail("PROBE_E2E_CPU:", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fail("sched_setaffinity:", err)
	}
	fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	buf := make([]byte, 1<<16)
	for _, w := range strings.Split(os.Getenv("PROBE_E2E_WRITES"), ",") {
		size, count, _ := strings.Cut(w, "x")
		s, err1 := strconv.Atoi(size)
		n, err2 := strconv.Atoi(count)
		if err1 != nil || err2 != nil || s > len(buf) {
			return fail("PROBE_E2E_WRITES:", w)
		}
		for i := 0; i < n; i++ {
			if got, err := unix.Write(fd, buf[:s]); err != nil || got != s {
				return fail("write /dev/null:", got, err)
			}
		}
	}
	return 0
}

// promServer is a Debian Prometheus scraping one exporter every second.
type promServer struct{ addr string }

func startPrometheus(t *testing.T, target string, flags ...string) *promServer {
	t.Helper()
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus (Debian's package) is not installed")
	}
	dir := t.TempDir()
	addr := freePort(t)
	cfg := "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: probe-exporter\n    static_configs:\n      - targets: ['" + target + "']\n"
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--config.file=" + filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}, flags...)
	cmd := exec.Command(prom, args...)
	var log testkit.LogBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus %v log:\n%s", flags, tail(log.String(), 30))
		}
	})
	return &promServer{addr: addr}
}

// query evaluates an instant query at time at (Unix seconds, 0: now) and
// returns the value of each series by its labels rendered as
// `{a="x",b="y"}`; nil if Prometheus does not answer yet.
func (p *promServer) query(q string, at float64) map[string]float64 {
	v := url.Values{"query": {q}}
	if at != 0 {
		v.Set("time", strconv.FormatFloat(at, 'f', 3, 64))
	}
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?" + v.Encode())
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" {
		return nil
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			continue
		}
		var names []string
		for k := range s.Metric {
			if k != "__name__" && k != "job" && k != "instance" {
				names = append(names, k)
			}
		}
		slices.Sort(names)
		var b strings.Builder
		for i, k := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", k, s.Metric[k])
		}
		out["{"+b.String()+"}"] = f
	}
	return out
}

// waitValue polls q until its one series has value want.
func (p *promServer) waitValue(t *testing.T, q string, want float64) {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	var got map[string]float64
	for {
		got = p.query(q, 0)
		if len(got) == 1 {
			for _, v := range got {
				if v == want {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus on %s: %s is %v, want %v", p.addr, q, got, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestNativeHistograms serves examples/write-sizes (an exp2 histogram of
// write() sizes in a per-CPU map, summed and split by CPU) to two Debian
// Prometheus servers, one ingesting native histograms (it scrapes
// protobuf) and one classic (text), while a process pinned to one CPU
// makes writes of known sizes. Both see exactly the same counts, sums and
// quantiles; the exporter's text output is the classic histogram and its
// protobuf output the classic plus the native one. Writes pinned to a
// second CPU then show in that CPU's series only, and in the sum.
func TestNativeHistograms(t *testing.T) {
	dir, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("clang"); err == nil {
		if out, err := exec.Command("make", "-C", dir, "write-sizes.bpf.o").CombinedOutput(); err != nil {
			t.Fatalf("make: %v\n%s", err, out)
		}
	} else if _, err := os.Stat(filepath.Join(dir, "write-sizes.bpf.o")); err != nil {
		t.Skip("building the example needs clang")
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	// The last CPU this test may run on, and another one if there is.
	cpu, other := -1, -1
	for i := 0; i < 1024; i++ {
		if set.IsSet(i) {
			cpu, other = i, cpu
		}
	}
	addr := exporter(t, "--config.dir="+dir, "--config.names=write-sizes", "--config.strict")
	native := startPrometheus(t, addr, "--enable-feature=native-histograms")
	classic := startPrometheus(t, addr)

	const comm = "e2e_write"
	writesOn := func(cpu int, spec string) {
		workload(t, comm, 0, "PROBE_E2E_SYSCALL=write", "PROBE_E2E_WRITES="+spec, "PROBE_E2E_CPU="+strconv.Itoa(cpu))
	}
	writes := func(spec string) { writesOn(cpu, spec) }
	sel := `{command="` + comm + `"}`
	const (
		name  = "probe_exporter_write_size_bytes"
		byCPU = "probe_exporter_write_size_by_cpu_bytes"
	)
	// First the series exist in both servers, with enough in the lowest
	// bucket used that rate() extrapolates every classic bucket alike
	// (a counter is not extrapolated below zero), then the writes whose
	// rate is measured.
	writes("3x200")
	native.waitValue(t, `histogram_count(`+name+sel+`)`, 200)
	classic.waitValue(t, name+`_count`+sel, 200)
	start := time.Now()
	writes("3x10,100x30,1000x20,5000x5")
	const count, sum = 265, 200*3 + 3*10 + 100*30 + 1000*20 + 5000*5
	native.waitValue(t, `histogram_count(`+name+sel+`)`, count)
	classic.waitValue(t, name+`_count`+sel, count)

	// The exporter's text: classic buckets, exact; the write-sizes CPU
	// split has them all on the pinned CPU.
	want := map[string]float64{"1": 0, "2": 0, "4": 210, "8": 210, "64": 210, "128": 240, "512": 240, "1024": 260, "4096": 260, "8192": 265, "4.294967296e+09": 265, "+Inf": 265}
	lines := series(t, addr, name+"_")
	for le, v := range want {
		l := fmt.Sprintf(`%s_bucket{command=%q,le=%q} %v`, name, comm, le, v)
		if !hasLine(lines, l) {
			t.Errorf("no line %s", l)
		}
	}
	for _, l := range []string{
		fmt.Sprintf(`%s_sum{command=%q} %d`, name, comm, sum),
		fmt.Sprintf(`%s_count{command=%q} %d`, name, comm, count),
		fmt.Sprintf(`%s_count{command=%q,cpu="%d"} %d`, byCPU, comm, cpu, count),
		fmt.Sprintf(`%s_bucket{command=%q,cpu="%d",le="128"} 240`, byCPU, comm, cpu),
	} {
		if !hasLine(append(lines, series(t, addr, byCPU+"_")...), l) {
			t.Errorf("no line %s", l)
		}
	}
	for _, l := range series(t, addr, byCPU+"_count{") {
		if strings.Contains(l, comm) && !strings.Contains(l, fmt.Sprintf(`cpu="%d"`, cpu)) && !strings.HasSuffix(l, " 0") {
			t.Errorf("writes counted on another CPU: %s", l)
		}
	}

	// The exporter's protobuf: the native buckets of schema 0, exact.
	h := protoHistogram(t, addr, name, comm)
	if h.GetSchema() != 0 || h.GetZeroThreshold() != 0.5 || h.GetZeroCount() != 0 || h.GetSampleCount() != count || h.GetSampleSum() != sum || len(h.GetBucket()) != 33 {
		t.Errorf("protobuf histogram: %v", h)
	}
	// Buckets 2 (2,4], 7 (64,128], 10 (512,1024], 13 (4096,8192]: counts
	// 210, 30, 20, 5.
	gotBuckets := map[int]int64{}
	idx, c := int32(0), int64(0)
	d := h.GetPositiveDelta()
	for _, s := range h.GetPositiveSpan() {
		idx += s.GetOffset()
		for range s.GetLength() {
			c += d[0]
			d = d[1:]
			if c != 0 {
				gotBuckets[int(idx)] = c
			}
			idx++
		}
	}
	if fmt.Sprint(gotBuckets) != fmt.Sprint(map[int]int64{2: 210, 7: 30, 10: 20, 13: 5}) {
		t.Errorf("native buckets %v", gotBuckets)
	}

	// Prometheus: the native series (no _bucket series in the native
	// server) and the classic one agree exactly.
	if got := native.query(name+`_bucket`+sel, 0); len(got) != 0 {
		t.Errorf("the native server has classic buckets too: %v", got)
	}
	at := float64(time.Now().UnixMilli()) / 1000
	for _, q := range []struct{ native, classic string }{
		{`histogram_count(` + name + sel + `)`, name + `_count` + sel},
		{`histogram_sum(` + name + sel + `)`, name + `_sum` + sel},
		{`sum(histogram_count(` + byCPU + sel + `))`, `sum(` + byCPU + `_count` + sel + `)`},
		{`histogram_count(` + byCPU + `{command="` + comm + `",cpu="` + strconv.Itoa(cpu) + `"})`, byCPU + `_count{command="` + comm + `",cpu="` + strconv.Itoa(cpu) + `"}`},
	} {
		n, c := native.query(q.native, at), classic.query(q.classic, at)
		if len(n) != 1 || len(c) != 1 || one(n) != one(c) {
			t.Errorf("native %s = %v, classic %s = %v", q.native, n, q.classic, c)
		}
	}
	// Quantiles of the counts since the start: 132.5 of 265 in (2,4] at
	// 132.5 of its 210, 238.5 in (64,128] at 28.5 of its 30.
	for _, tc := range []struct {
		q    string
		want float64
	}{{"0.5", 2 + 2*132.5/210}, {"0.9", 64 + 64*28.5/30}} {
		nq := `histogram_quantile(` + tc.q + `, ` + name + sel + `)`
		cq := `histogram_quantile(` + tc.q + `, ` + name + `_bucket` + sel + `)`
		n, c := native.query(nq, at), classic.query(cq, at)
		if len(n) != 1 || len(c) != 1 || !near(one(n), tc.want) || !near(one(c), tc.want) {
			t.Errorf("native %s = %v, classic %s = %v, want %v", nq, n, cq, c, tc.want)
		}
	}
	// The window holds a sample from before the second writes (the servers
	// had the first ones) and after: 1m, unless this machine is so loaded
	// that the servers took longer to see them.
	window := "1m"
	if took := time.Since(start); took > 30*time.Second {
		window = strconv.Itoa(int(took.Seconds())+30) + "s"
	}
	// The rate of the second writes: 65 writes, the median is in (64,128]
	// at 10+22.5 of its 30: 64 + 64*22.5/30 = 112; the 0.9 quantile in
	// (512, 1024] at 58.5-40 = 18.5 of 20: 512 + 512*18.5/20 = 985.6. The
	// servers scrape at different times, so their rates differ by a factor;
	// the quantiles do not.
	for _, tc := range []struct {
		q    string
		want float64
	}{{"0.5", 112}, {"0.9", 985.6}} {
		nq := `histogram_quantile(` + tc.q + `, rate(` + name + sel + `[` + window + `]))`
		cq := `histogram_quantile(` + tc.q + `, rate(` + name + `_bucket` + sel + `[` + window + `]))`
		n, c := native.query(nq, at), classic.query(cq, at)
		t.Logf("native %s = %v, classic %s = %v", nq, n, cq, c)
		if len(n) != 1 || len(c) != 1 || !near(one(n), tc.want) || !near(one(c), tc.want) {
			t.Errorf("native %s = %v, classic %s = %v, want %v", nq, n, cq, c, tc.want)
		}
	}

	if other < 0 {
		return
	}
	// Writes on another CPU: its own series of the CPU split, and in the
	// sum.
	writesOn(other, "7x5")
	deadline := time.Now().Add(60 * time.Second)
	for _, l := range []string{
		fmt.Sprintf(`%s_count{command=%q,cpu="%d"} 5`, byCPU, comm, other),
		fmt.Sprintf(`%s_bucket{command=%q,cpu="%d",le="8"} 5`, byCPU, comm, other),
		fmt.Sprintf(`%s_bucket{command=%q,cpu="%d",le="4"} 0`, byCPU, comm, other),
		fmt.Sprintf(`%s_count{command=%q,cpu="%d"} %d`, byCPU, comm, cpu, count),
		fmt.Sprintf(`%s_count{command=%q} %d`, name, comm, count+5),
		fmt.Sprintf(`%s_sum{command=%q} %d`, name, comm, sum+35),
	} {
		for !hasLine(append(series(t, addr, name+"_"), series(t, addr, byCPU+"_")...), l) {
			if time.Now().After(deadline) {
				t.Fatalf("no line %s", l)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func one(m map[string]float64) float64 {
	for _, v := range m {
		return v
	}
	return math.NaN()
}

// near: equal but for rounding (rates are floating point).
func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Abs(b) }

// protoHistogram scrapes the exporter in delimited protobuf and returns
// the histogram of family name whose command label is comm.
func protoHistogram(t *testing.T, addr, name, comm string) *dto.Histogram {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics?name[]="+name, nil)
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var mf dto.MetricFamily
	if err := dec.Decode(&mf); err != nil {
		t.Fatal(err)
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "command" && l.GetValue() == comm {
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("no %s{command=%q} in protobuf", name, comm)
	return nil
}
