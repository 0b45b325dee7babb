package scripts

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// BenchmarkBpftrace10kKeys: one scrape of a bpftrace script whose map holds
// 10,000 keys (SIGUSR1, JSON dump, conversion, validation).
func BenchmarkBpftrace10kKeys(b *testing.B) {
	if _, err := exec.LookPath("bpftrace"); err != nil {
		b.Skip("bpftrace is not installed")
	}
	b.Setenv("BPFTRACE_MAP_KEYS_MAX", "20000")
	dir := b.TempDir()
	writeScriptB(b, dir, "big.bt", `BEGIN { $i = 0; while ($i < 10000) { @big[$i] = $i; $i++; } } interval:s:3600 { exit(); }`)
	s, err := New(Options{Dir: dir, StartWait: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeScript(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	defer srv.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, body := testkit.Get(b, srv.URL+"/big.bt")
		if strings.Count(body, "\nbig{") == 10000 {
			break
		}
		if time.Now().After(deadline) {
			b.Skipf("bpftrace did not produce the 10k-key map: %.200s", body)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		testkit.Get(b, srv.URL+"/big.bt")
	}
}

// BenchmarkFiftyScripts: scraping each of 50 executable scripts supervised
// at once.
func BenchmarkFiftyScripts(b *testing.B) {
	dir := b.TempDir()
	for i := 0; i < 50; i++ {
		writeScriptB(b, dir, fmt.Sprintf("s%02d.sh", i), "#!/bin/sh\nwhile true; do echo \"# TYPE v gauge\"; echo \"v{i=\\\"1\\\"} 1\"; echo '# EOF'; sleep 1; done\n")
	}
	s, err := New(Options{Dir: dir, StartWait: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeScript(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	defer srv.Close()
	for i := 0; i < 50; i++ {
		testkit.Get(b, fmt.Sprintf("%s/s%02d.sh", srv.URL, i))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 50; j++ {
			testkit.Get(b, fmt.Sprintf("%s/s%02d.sh", srv.URL, j))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/50, "ns/script-scrape")
}

func writeScriptB(b *testing.B, dir, name, body string) {
	mode := os.FileMode(0o644)
	if strings.HasSuffix(name, ".sh") {
		mode = 0o755
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
		b.Fatal(err)
	}
}
