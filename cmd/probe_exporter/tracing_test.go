package main

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// execTraceProg records the lifetime of a process started from ROOT_PATH
// as a root span, and of the processes it starts as its children, in
// ebpf_exporter's span record layout (struct span_base_t, then the tgid and
// the executable as span_name).
const execTraceProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct span_parent_t { u64 trace_id_hi; u64 trace_id_lo; u64 span_id; };
struct span_base_t {
	struct span_parent_t parent;
	u64 span_id;
	u64 span_monotonic_timestamp_ns;
	u64 span_duration_ns;
};
struct exec_span_t { struct span_base_t base; u64 tgid; char exe[64]; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, struct exec_span_t);
} traced SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} exec_spans SEC(".maps");

static const char root[] = "ROOT_PATH";

// Set by the exporter from kaddrs: without it no span is recorded.
const volatile u64 kaddr_do_exit = 0;

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	u64 ts = bpf_ktime_get_ns();
	u32 tgid = p->tgid, ptgid = p->real_parent->tgid;
	struct exec_span_t span = {};
	if (bpf_probe_read_kernel_str(span.exe, sizeof(span.exe), bprm->filename) < 0)
		return 0;
	struct exec_span_t *parent = bpf_map_lookup_elem(&traced, &ptgid);
	if (parent) {
		span.base.parent.trace_id_hi = parent->base.parent.trace_id_hi;
		span.base.parent.trace_id_lo = parent->base.parent.trace_id_lo;
		span.base.parent.span_id = parent->base.span_id;
	} else {
		for (int i = 0; i < sizeof(root); i++)
			if (span.exe[i] != root[i])
				return 0;
		span.base.parent.trace_id_hi = tgid;
		span.base.parent.trace_id_lo = ts;
	}
	span.base.span_id = ts;
	span.base.span_monotonic_timestamp_ns = ts;
	span.tgid = tgid;
	bpf_map_update_elem(&traced, &tgid, &span, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (p->pid != p->tgid || kaddr_do_exit == 0)
		return 0;
	u32 tgid = p->tgid;
	struct exec_span_t *span = bpf_map_lookup_elem(&traced, &tgid);
	if (!span)
		return 0;
	span->base.span_duration_ns = bpf_ktime_get_ns() - span->base.span_monotonic_timestamp_ns;
	struct exec_span_t *out = bpf_ringbuf_reserve(&exec_spans, sizeof(*out), 0);
	if (out) {
		*out = *span;
		bpf_ringbuf_submit(out, 0);
	}
	bpf_map_delete_elem(&traced, &tgid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

const execTraceYAML = `kaddrs:
  - do_exit
tracing:
  spans:
    - name: exec
      ringbuf: exec_spans
      service: exec-trace
      labels:
        - name: trace_id
          size: 16
          decoders:
            - name: hex
        - name: parent_span_id
          size: 8
          decoders:
            - name: hex
        - name: span_id
          size: 8
          decoders:
            - name: hex
        - name: span_monotonic_timestamp_ns
          size: 8
          decoders:
            - name: uint
        - name: span_duration_ns
          size: 8
          decoders:
            - name: uint
        - name: tgid
          size: 8
          decoders:
            - name: uint
        - name: span_name
          size: 64
          decoders:
            - name: string
`

// receivedSpan is a span as an OTLP receiver got it, with its service.
type receivedSpan struct {
	service string
	*tracepb.Span
}

// otlpReceiver collects the spans of OTLP export requests.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []receivedSpan
}

func (r *otlpReceiver) add(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, receivedSpan{service: service, Span: s})
			}
		}
	}
}

func (r *otlpReceiver) named(name string) []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedSpan
	for _, s := range r.spans {
		if s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

// Export implements the OTLP gRPC trace service.
func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type grpcTraceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *otlpReceiver
}

func (g grpcTraceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	return g.r.Export(ctx, req)
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// startReceiver starts an OTLP receiver speaking protocol and returns its
// endpoint URL.
func startReceiver(t *testing.T, protocol string, r *otlpReceiver) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch protocol {
	case "grpc":
		srv := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(srv, grpcTraceService{r: r})
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(srv.Stop)
	default:
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
			body, err := io.ReadAll(io.LimitReader(req.Body, 64<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var msg coltracepb.ExportTraceServiceRequest
			if err := proto.Unmarshal(body, &msg); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.add(&msg)
			out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(out)
		})
		srv := &http.Server{Handler: mux}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { srv.Close() })
	}
	return "http://" + l.Addr().String()
}

// TestTracingSpans runs ebpf_exporter's exec-trace layout against a real
// OTLP receiver over HTTP and gRPC: an exec of a helper (a copy of sh
// running /bin/true twice) becomes a root span with two children, with the
// record's ids, timestamps and labels; the exporter's own start is traced
// too (attach > attach_configs > attach_config).
func TestTracingSpans(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "trace-root-sh")
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, "exectrace", strings.Replace(execTraceProg, "ROOT_PATH", root, 1), execTraceYAML)

	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(strings.ReplaceAll(protocol, "/", "_"), func(t *testing.T) {
			r := &otlpReceiver{}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", startReceiver(t, protocol, r))
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
			t.Setenv("OTEL_SERVICE_NAME", "")
			addr := exporter(t, "--config.dir="+dir, "--config.names=exectrace")
			if up := series(t, addr, `probe_exporter_config_up{config="exectrace"}`); !hasLine(up, `probe_exporter_config_up{config="exectrace"} 1`) {
				t.Fatalf("exectrace not up: %v", up)
			}

			cmd := exec.Command(root, "-c", "/bin/true; /bin/true; :")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper: %v: %s", err, out)
			}
			pid := strconv.Itoa(cmd.Process.Pid)

			var roots, children []receivedSpan
			deadline := time.Now().Add(30 * time.Second)
			for {
				roots, children = nil, nil
				for _, s := range r.named(root) {
					if attr(s.GetAttributes(), "tgid") == pid {
						roots = append(roots, s)
					}
				}
				for _, s := range r.named("/bin/true") {
					if len(roots) == 1 && string(s.GetTraceId()) == string(roots[0].GetTraceId()) {
						children = append(children, s)
					}
				}
				if len(roots) == 1 && len(children) == 2 && len(r.named("attach_config")) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("spans: %d roots, %d children of pid %s; received %d spans", len(roots), len(children), pid, len(r.spans))
				}
				time.Sleep(50 * time.Millisecond)
			}
			rs := roots[0]
			for _, s := range append([]receivedSpan{rs}, children...) {
				t.Logf("%s %s trace %x span %x parent %x %v", s.service, s.GetName(), s.GetTraceId(), s.GetSpanId(), s.GetParentSpanId(), time.Duration(s.GetEndTimeUnixNano()-s.GetStartTimeUnixNano()))
			}
			if rs.service != "exec-trace" {
				t.Errorf("service %q, want the config's exec-trace", rs.service)
			}
			if len(rs.GetParentSpanId()) != 0 && hex.EncodeToString(rs.GetParentSpanId()) != "0000000000000000" {
				t.Errorf("root span has parent %x", rs.GetParentSpanId())
			}
			// trace_id_hi is the root's tgid, as the program records it.
			if tid := hex.EncodeToString(rs.GetTraceId()); !strings.HasPrefix(tid, hex.EncodeToString(le64(uint64(cmd.Process.Pid)))) {
				t.Errorf("trace id %s does not start with the tgid's bytes", tid)
			}
			if got := attr(rs.GetAttributes(), "ebpf_exporter.config"); got != "exectrace" {
				t.Errorf("ebpf_exporter.config = %q", got)
			}
			for _, s := range append([]receivedSpan{rs}, children...) {
				if s.GetEndTimeUnixNano() <= s.GetStartTimeUnixNano() {
					t.Errorf("span %s: duration %d ns", s.GetName(), int64(s.GetEndTimeUnixNano()-s.GetStartTimeUnixNano()))
				}
				if start := time.Unix(0, int64(s.GetStartTimeUnixNano())); time.Since(start) > time.Minute || time.Until(start) > time.Second {
					t.Errorf("span %s starts at %v, not about now", s.GetName(), start)
				}
			}
			for _, c := range children {
				if string(c.GetParentSpanId()) != string(rs.GetSpanId()) {
					t.Errorf("child %x has parent %x, want the root %x", c.GetSpanId(), c.GetParentSpanId(), rs.GetSpanId())
				}
				if c.GetStartTimeUnixNano() < rs.GetStartTimeUnixNano() || c.GetEndTimeUnixNano() > rs.GetEndTimeUnixNano() {
					t.Errorf("child %x is not within its parent", c.GetSpanId())
				}
				if attr(c.GetAttributes(), "tgid") == pid {
					t.Error("a child span has the root's tgid")
				}
			}

			// The start of the exporter: attach > attach_configs > attach_config.
			ac := r.named("attach_config")[0]
			if attr(ac.GetAttributes(), "config") != "exectrace" || ac.service != "probe_exporter" {
				t.Errorf("attach_config: config %q service %q", attr(ac.GetAttributes(), "config"), ac.service)
			}
			// kaddrs resolved in pass_kaddrs, /proc/kallsyms read in
			// populate_kaddrs below it.
			pk, pop := r.named("pass_kaddrs"), r.named("populate_kaddrs")
			if len(pk) != 1 || len(pop) != 1 || string(pk[0].GetParentSpanId()) != string(ac.GetSpanId()) || string(pop[0].GetParentSpanId()) != string(pk[0].GetSpanId()) {
				t.Errorf("kaddrs spans: %d pass_kaddrs, %d populate_kaddrs, not below attach_config", len(pk), len(pop))
			} else if ev := pk[0].GetEvents(); len(ev) != 1 || ev[0].GetName() != "kaddr" || attr(ev[0].GetAttributes(), "symbol") != "do_exit" {
				t.Errorf("pass_kaddrs events %v", ev)
			}
			acs, at := r.named("attach_configs"), r.named("attach")
			if len(acs) != 1 || len(at) != 1 || string(ac.GetParentSpanId()) != string(acs[0].GetSpanId()) || string(acs[0].GetParentSpanId()) != string(at[0].GetSpanId()) {
				t.Errorf("start trace: attach %d, attach_configs %d, parents not chained", len(at), len(acs))
			}
		})
	}
}

func le64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

// TestTracingReceiverDown: a receiver that refuses every export, slowly,
// neither stops the ring buffer from being read nor the metrics from being
// served, and SIGTERM still ends the exporter cleanly (the harness checks
// the exit).
func TestTracingReceiverDown(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "trace-root-sh")
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, "exectrace", strings.Replace(execTraceProg, "ROOT_PATH", root, 1), execTraceYAML)
	var mu sync.Mutex
	requests := 0
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		requests++
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		http.Error(w, "receiver down", http.StatusServiceUnavailable)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+l.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	addr := exporter(t, "--config.dir="+dir, "--config.names=exectrace")
	for i := range 20 {
		if out, err := exec.Command(root, "-c", "/bin/true; :").CombinedOutput(); err != nil {
			t.Fatalf("helper %d: %v: %s", i, err, out)
		}
	}
	testkit.Eventually(t, "an export attempt", func() bool { mu.Lock(); defer mu.Unlock(); return requests > 0 })
	if up := series(t, addr, `probe_exporter_config_up{config="exectrace"}`); !hasLine(up, `probe_exporter_config_up{config="exectrace"} 1`) {
		t.Errorf("config not up with the receiver down: %v", up)
	}
	if errs := series(t, addr, `probe_exporter_decoder_errors_total{config="exectrace"}`); !hasLine(errs, `probe_exporter_decoder_errors_total{config="exectrace"} 0`) {
		t.Errorf("decoder errors: %v", errs)
	}
}

// TestSpansAndMetricsFromOneRingBuffer: one ring buffer feeds both an
// ebpf_exporter tracing span and an events counter. Every record is a span
// and a count: the helper's three processes (the root and two children)
// give three spans and a count of 3 under the trace's first 8 bytes (the
// root's tgid, as the program records it).
func TestSpansAndMetricsFromOneRingBuffer(t *testing.T) {
	// The program matches the root's path within 64 bytes: a short one.
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	root := filepath.Join(dir, "both-root-sh")
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := execTraceYAML + `metrics:
  counters:
    - name: exec_span_records_total
      help: exec spans seen as ring buffer records, by the trace's root tgid
      events: exec_spans
      labels:
        - name: trace_tgid
          size: 8
          decoders:
            - name: uint
`
	writeConfig(t, dir, "bothways", strings.Replace(execTraceProg, "ROOT_PATH", root, 1), yaml)
	r := &otlpReceiver{}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", startReceiver(t, "http/protobuf", r))
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	addr := exporter(t, "--config.dir="+dir, "--config.names=bothways")
	if up := series(t, addr, `probe_exporter_config_up{config="bothways"}`); !hasLine(up, `probe_exporter_config_up{config="bothways"} 1`) {
		t.Fatalf("bothways not up: %v", up)
	}
	cmd := exec.Command(root, "-c", "/bin/true; /bin/true; :")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	want := `probe_exporter_exec_span_records_total{trace_tgid="` + pid + `"} 3`
	defer func() {
		if t.Failed() {
			t.Logf("spans named %s: %d, /bin/true: %d, records: %v, counter: %v", root, len(r.named(root)), len(r.named("/bin/true")),
				series(t, addr, "probe_exporter_event_records"), series(t, addr, "probe_exporter_exec_span_records_total"))
		}
	}()
	testkit.Eventually(t, "3 spans of the helper's trace and "+want, func() bool {
		var roots []receivedSpan
		for _, s := range r.named(root) {
			if attr(s.GetAttributes(), "tgid") == pid {
				roots = append(roots, s)
			}
		}
		if len(roots) != 1 {
			return false
		}
		children := 0
		for _, s := range r.named("/bin/true") {
			if string(s.GetTraceId()) == string(roots[0].GetTraceId()) {
				children++
			}
		}
		return children == 2 && hasLine(series(t, addr, "probe_exporter_exec_span_records_total"), want)
	})
	// Nothing counted twice, nothing more: the count stays at 3.
	if got := series(t, addr, `probe_exporter_exec_span_records_total{trace_tgid="`+pid+`"}`); !hasLine(got, want) {
		t.Errorf("counter: %v, want %s", got, want)
	}
}

// TestTracingSpanMapChecked: a span naming a map the object lacks fails
// --config.check with the span's line, though no OTLP endpoint is set
// (spans would not be exported here, and would fail where they are); a
// kaddrs entry the object has no variable for, with the line of kaddrs.
func TestTracingSpanMapChecked(t *testing.T) {
	dir := t.TempDir()
	prog := strings.Replace(execTraceProg, "ROOT_PATH", "/nonexistent", 1)
	writeConfig(t, dir, "badspan", prog, strings.Replace(execTraceYAML, "ringbuf: exec_spans", "ringbuf: exec_spanz", 1))
	writeConfig(t, dir, "badkaddr", prog, strings.Replace(execTraceYAML, "  - do_exit", "  - do_exit\n  - no_such_symbol", 1))
	out, err := exec.Command(binaryPath, "--config.dir="+dir, "--config.names=badspan,badkaddr", "--config.check").CombinedOutput()
	for _, want := range []string{
		filepath.Join(dir, "badspan.yaml") + `:5: tracing span "exec": the object has no map "exec_spanz"`,
		filepath.Join(dir, "badkaddr.yaml") + `:1: kaddrs: object has no variable "kaddr_no_such_symbol"`,
	} {
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("--config.check: %v, want exit 1 saying %q:\n%s", err, want, out)
		}
	}
}
