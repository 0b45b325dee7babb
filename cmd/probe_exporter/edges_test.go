package main

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// ingestRSSBoundMiB is the README's bound on the exporter's RSS under
// /ingest pushes with the default flags: 2 x --ingest.max-inflight-bytes
// (128 MiB) + 256 MiB.
const ingestRSSBoundMiB = 2*128 + 256

// bombExpect is what each bomb of testkit.IngestBombs gets from the built
// binary with its default flags: 413 naming the bound passed, or 200.
var bombExpect = map[string]struct {
	code   int
	reason string
}{
	"10M empty samples":                  {413, "more than 500000 samples"},
	"5M tiny locations":                  {413, "more than 500000 locations"},
	"5M tiny functions":                  {413, "more than 500000 functions"},
	"20M empty strings":                  {413, "more than 1048576 strings"},
	"a string of 60 MiB":                 {413, "a string of more than 1048576 bytes"},
	"8 strings of 1 MiB in one stack":    {413, "a stack of more than 1048576 bytes"},
	"300 distinct stacks of 4096 frames": {200, ""},
	"8200 samples of 128 labels":         {413, "more than 1048576 sample labels"},
	"folded, 1M distinct stacks":         {413, "more than 500000 distinct stacks"},
	"folded, a stack of 100k frames":     {413, "a stack of more than 4096 frames"},
}

// startIngestTarget runs the built binary with its default flags and a
// rules file (so that pushes are counted), and returns it and its address.
func startIngestTarget(t *testing.T) (*proc, string) {
	t.Helper()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("metrics-export-rules:\n  bomb_total:\n    expr: ''\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--rules.file="+rulesFile)
	return p, addr
}

// pushAsAttacker has the attacker send the file at path with curl and
// returns the status and the answer.
func pushAsAttacker(t *testing.T, a *testkit.Attacker, addr, query, path string, gz bool) (int, string) {
	t.Helper()
	args := []string{"-s", "-o", path + ".answer", "-w", "%{http_code}", "--max-time", "120", "--data-binary", "@" + path}
	if gz {
		args = append(args, "-H", "Content-Encoding: gzip")
	}
	out, err := a.Command("curl", append(args, "http://"+addr+"/ingest?"+query)...).Output()
	if err != nil {
		t.Fatalf("curl as %s: %v %s", a.Name, err, out)
	}
	code, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	answer, _ := os.ReadFile(path + ".answer")
	return code, string(answer)
}

// afterAttack asserts what every attack leaves: /metrics answers, no panic
// in the log, and VmHWM under the bound. It returns VmHWM in MiB.
func afterAttack(t *testing.T, p *proc, addr string, boundMiB int64) int64 {
	t.Helper()
	if code, body := get(t, "http://"+addr+"/metrics"); code != 200 || !strings.Contains(body, "probe_exporter_ingest_requests_total") {
		t.Errorf("/metrics after the attack: %d", code)
	}
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("the exporter panicked:\n%s", tail(p.Log(), 40))
	}
	hwm := testkit.StatusKiB(t, p.Pid(), "VmHWM:") >> 10
	if hwm == 0 || hwm >= boundMiB {
		t.Errorf("VmHWM %d MiB, bound %d MiB", hwm, boundMiB)
	}
	return hwm
}

// TestAttackIngestBombs: a local user with no privilege pushes each
// /ingest bomb to the built binary running as root with its default flags,
// one exporter per bomb, then all of them at once from parallel clients to
// one exporter: each is refused 413 with the bound it passed named (or
// accepted when within the bounds), /metrics keeps answering, nothing
// panics, and the peak RSS (VmHWM) stays under the README's 512 MiB. The
// exporters end within their stop grace on SIGTERM (startExporter's
// cleanup). The table it logs is bench/README.md's (bench/ingest-bombs.sh).
func TestAttackIngestBombs(t *testing.T) {
	a := testkit.NewAttacker(t)
	bombs := testkit.IngestBombs()
	files := map[string]string{}
	for i, b := range bombs {
		files[b.Name] = filepath.Join(a.Home, fmt.Sprintf("bomb%d", i))
		a.WriteFile(t, files[b.Name], b.Body, 0o644)
	}
	var table []string
	for _, b := range bombs {
		t.Run(b.Name, func(t *testing.T) {
			want, ok := bombExpect[b.Name]
			if !ok {
				t.Fatalf("no expectation for %q", b.Name)
			}
			p, addr := startIngestTarget(t)
			idle := testkit.StatusKiB(t, p.Pid(), "VmHWM:") >> 10
			code, answer := pushAsAttacker(t, a, addr, b.Query, files[b.Name], b.Gzip)
			if code != want.code || !strings.Contains(answer, want.reason) {
				t.Errorf("%d %q, want %d %q", code, answer, want.code, want.reason)
			}
			hwm := afterAttack(t, p, addr, ingestRSSBoundMiB)
			table = append(table, fmt.Sprintf("| %s | %s | %d | %d MiB | %d MiB |", b.Name, kib(len(b.Body)), code, idle, hwm))
		})
	}
	t.Run("all at once, twice each", func(t *testing.T) {
		p, addr := startIngestTarget(t)
		var script strings.Builder
		for _, b := range bombs {
			hdr := ""
			if b.Gzip {
				hdr = "-H 'Content-Encoding: gzip'"
			}
			for i := range 2 {
				fmt.Fprintf(&script, "curl -s -o /dev/null -w '%%{http_code}\\n' --max-time 300 %s --data-binary @%s 'http://%s/ingest?%s' > %s.code%d &\n", hdr, files[b.Name], addr, b.Query, files[b.Name], i)
			}
		}
		script.WriteString("wait\n")
		a.Run(t, script.String())
		for _, b := range bombs {
			for i := range 2 {
				out, _ := os.ReadFile(fmt.Sprintf("%s.code%d", files[b.Name], i))
				code, _ := strconv.Atoi(strings.TrimSpace(string(out)))
				// In parallel a push may find the others holding the
				// in-flight memory before its own bound is found: 503 with
				// Retry-After, which is bounded too.
				if want := bombExpect[b.Name].code; code != want && code != 503 {
					t.Errorf("%s: %d, want %d", b.Name, code, want)
				}
			}
		}
		hwm := afterAttack(t, p, addr, ingestRSSBoundMiB)
		table = append(table, fmt.Sprintf("| all %d at once, twice each (%d clients) | | | | %d MiB |", len(bombs), 2*len(bombs), hwm))
	})
	t.Logf("bomb table:\n| bomb | sent (gzip) | answer | VmHWM idle | VmHWM after |\n| --- | ---: | ---: | ---: | ---: |\n%s", strings.Join(table, "\n"))
}

func kib(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/1024)
}

// TestAttackReloadCrossSite: with the default flags, POST /-/reload as a
// page of another site makes a browser send it (a form: urlencoded, no
// custom header, Origin and Sec-Fetch-Site of the other site), sent by a
// local user, is refused 403 and does not reload; curl -X POST reloads.
// With --no-web.enable-reload the endpoint answers 404 and SIGHUP still
// reloads.
func TestAttackReloadCrossSite(t *testing.T) {
	a := testkit.NewAttacker(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(rule string) {
		if err := os.WriteFile(rulesFile, []byte("metrics-export-rules:\n  "+rule+":\n    expr: 'app.cpu'\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	push := func(addr string) {
		resp, err := http.Post("http://"+addr+"/ingest?name=app.cpu&sampleRate=100", "text/plain", strings.NewReader("a;b 100\n"))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("ingest: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	post := func(addr string, headers ...string) string {
		args := []string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"}
		for _, h := range headers {
			args = append(args, "-H", h)
		}
		out, err := a.Command("curl", append(args, "http://"+addr+"/-/reload")...).Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		return string(out)
	}

	write("before_total")
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--rules.file="+rulesFile)
	push(addr)
	waitFor(t, addr, "before_total", "before_total 1")
	write("after_total")
	for _, form := range [][]string{
		{"Origin: http://evil.example", "Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate", "Content-Type: application/x-www-form-urlencoded"},
		{"Origin: http://evil.example", "Content-Type: text/plain"},
		{"Content-Type: multipart/form-data; boundary=x"},
	} {
		if code := post(addr, form...); code != "403" {
			t.Errorf("cross-site reload %q: %s, want 403", form, code)
		}
	}
	push(addr)
	waitFor(t, addr, "before_total", "before_total 2")
	if lines := series(t, addr, "after_total"); len(lines) != 0 {
		t.Errorf("a refused reload reloaded: %v", lines)
	}
	if code := post(addr); code != "200" {
		t.Fatalf("curl -X POST /-/reload: %s", code)
	}
	push(addr)
	waitFor(t, addr, "after_total", "after_total 1")
	afterAttack(t, p, addr, ingestRSSBoundMiB)

	write("off_total")
	addr2 := freePort(t)
	p2 := startExporter(t, func() bool { return serves(addr2) }, "--web.listen-address="+addr2, "--rules.file="+rulesFile, "--no-web.enable-reload")
	write("sighup_total")
	if code := post(addr2); code != "404" {
		t.Errorf("POST /-/reload with --no-web.enable-reload: %s, want 404", code)
	}
	push(addr2)
	waitFor(t, addr2, "off_total", "off_total 1")
	if err := syscall.Kill(p2.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the SIGHUP reload", func() bool {
		return hasLine(series(t, addr2, "probe_exporter_config_last_reload_successful"), "probe_exporter_config_last_reload_successful 1") &&
			len(series(t, addr2, "off_total")) == 0
	})
	push(addr2)
	waitFor(t, addr2, "sighup_total", "sighup_total 1")
}

// TestKubernetesHostileAPI: the built binary, pointed at an API server as
// a user points it (--kubernetes.api-server, the service account files),
// with a config using the kubernetes decoder. The server answers every
// list page with 8 MB and a continue token, without end, then with a body
// that never ends: each list fails with the bound it passed named, is
// counted and retried, the exporter keeps serving, and its peak RSS stays
// under 256 MiB (before these bounds it grew 12 MB a page, without end).
func TestKubernetesHostileAPI(t *testing.T) {
	testkit.RequireTools(t, "clang")
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", "-C", examples, "kube-syscalls.bpf.o").CombinedOutput(); err != nil {
		t.Fatalf("make -C examples: %v\n%s", err, out)
	}
	var endless atomic.Bool
	pad := strings.Repeat("x", 8<<20-1024)
	var page atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := page.Add(1)
		if r.URL.Query().Get("watch") == "true" {
			http.Error(w, "no watch here", http.StatusInternalServerError)
			return
		}
		if !endless.Load() {
			fmt.Fprintf(w, `{"metadata":{"resourceVersion":"7","continue":"c%d"},"items":[{"metadata":{"uid":"%08x-0000-4000-8000-000000000000","name":"p","namespace":"ns","annotations":{"pad":"%s"}}}]}`, n, n, pad)
			return
		}
		fmt.Fprint(w, `{"metadata":{"resourceVersion":"7"},"items":[`)
		blank := []byte(strings.Repeat(" ", 64<<10))
		for {
			if _, err := w.Write(blank); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	sa := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for name, data := range map[string][]byte{"token": []byte("t"), "ca.crt": ca} {
		if err := os.WriteFile(filepath.Join(sa, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+examples, "--config.names=kube-syscalls",
		"--kubernetes.api-server="+srv.URL, "--kubernetes.service-account-dir="+sa, "--kubernetes.node-name=node-a")
	listErrors := func() int {
		for _, l := range series(t, addr, `probe_exporter_kubernetes_api_errors_total{request="list"}`) {
			n, _ := strconv.Atoi(l[strings.LastIndexByte(l, ' ')+1:])
			return n
		}
		return 0
	}
	testkit.Eventually(t, "two failed lists of endless 8 MB pages", func() bool { return listErrors() >= 2 })
	if !strings.Contains(p.Log(), "the pod list over 67108864 bytes in all its pages") {
		t.Errorf("the list bound is not named in the log:\n%s", tail(p.Log(), 20))
	}
	endless.Store(true)
	before := listErrors()
	testkit.Eventually(t, "a failed list of a never ending body", func() bool { return listErrors() > before })
	if !strings.Contains(p.Log(), "over 8388608 bytes") {
		t.Errorf("the object bound is not named in the log:\n%s", tail(p.Log(), 20))
	}
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("the exporter panicked:\n%s", tail(p.Log(), 40))
	}
	if code, _ := get(t, "http://"+addr+"/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
	hwm := testkit.StatusKiB(t, p.Pid(), "VmHWM:") >> 10
	t.Logf("VmHWM %d MiB after %d list requests", hwm, page.Load())
	if hwm == 0 || hwm >= 256 {
		t.Errorf("VmHWM %d MiB, bound 256 MiB", hwm)
	}
}
