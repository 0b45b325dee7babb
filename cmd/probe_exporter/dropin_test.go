package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// dropinProg has what ebpf_exporter's examples have: a counter by comm
// and an exp2 histogram of the syscall ids of threads named dropin_*.
const dropinProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct comm_key { char comm[16]; };
struct hist_key { u64 bucket; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, u64);
} dropin_calls_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct hist_key);
	__type(value, u64);
} dropin_syscall_ids SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int count(struct trace_event_raw_sys_enter *ctx) {
	struct comm_key k = {};
	bpf_get_current_comm(&k.comm, sizeof(k.comm));
	if (k.comm[0] != 'd' || k.comm[1] != 'r' || k.comm[2] != 'o' || k.comm[3] != 'p')
		return 0;
	u64 one = 1, *v = bpf_map_lookup_elem(&dropin_calls_total, &k);
	if (v) __sync_fetch_and_add(v, 1);
	else bpf_map_update_elem(&dropin_calls_total, &k, &one, BPF_NOEXIST);
	struct hist_key h = {};
	u64 id = ctx->id;
	while (h.bucket < 10 && (1ULL << h.bucket) < id) h.bucket++;
	v = bpf_map_lookup_elem(&dropin_syscall_ids, &h);
	if (v) __sync_fetch_and_add(v, 1);
	else bpf_map_update_elem(&dropin_syscall_ids, &h, &one, BPF_NOEXIST);
	h.bucket = 11; /* the sum */
	v = bpf_map_lookup_elem(&dropin_syscall_ids, &h);
	if (v) __sync_fetch_and_add(v, id);
	else bpf_map_update_elem(&dropin_syscall_ids, &h, &id, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

const dropinYAML = `metrics:
  counters:
    - name: dropin_calls_total
      help: Syscalls by command
      labels:
        - name: comm
          size: 16
          decoders:
            - name: string
  histograms:
    - name: dropin_syscall_ids
      help: Syscall ids seen
      bucket_type: exp2
      bucket_min: 0
      bucket_max: 10
      labels:
        - name: bucket
          size: 8
          decoders:
            - name: uint
`

// unattachedProg loads but cannot attach: its uprobe's file does not
// exist.
const unattachedProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, u64);
} unattached_total SEC(".maps");

SEC("uprobe//nonexistent/probe-exporter-dropin:main")
int never(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
`

const unattachedYAML = `metrics:
  counters:
    - name: unattached_total
      help: Never counted
      labels:
        - name: key
          size: 4
          decoders:
            - name: uint
`

// family is what a dashboard or alert depends on: a family's name, help,
// type and label names.
type family struct {
	Name, Help, Type string
	Labels           string
}

// ebpfExporterFamilies are the families ebpf_exporter v2.5.1 serves for
// the dropin and unattached configs, as its source describes them
// (cmd/ebpf_exporter/main.go, exporter/exporter.go); program run time and
// count are left out, served only with kernel.bpf_stats_enabled=1 by both.
var ebpfExporterFamilies = []family{
	{"ebpf_exporter_build_info", "A metric with a constant '1' value labeled by version, revision, branch, goversion from which ebpf_exporter was built, and the goos and goarch for the build.", "GAUGE", "branch,goarch,goos,goversion,revision,tags,version"},
	{"ebpf_exporter_decoder_errors_total", "How many times has decoders encountered errors", "COUNTER", "config"},
	{"ebpf_exporter_dropin_calls_total", "Syscalls by command", "COUNTER", "comm"},
	{"ebpf_exporter_dropin_syscall_ids", "Syscall ids seen", "HISTOGRAM", ""},
	{"ebpf_exporter_ebpf_program_attached", "Whether a program is attached", "GAUGE", "id"},
	{"ebpf_exporter_ebpf_program_info", "Info about ebpf programs", "GAUGE", "config,id,program,tag"},
	{"ebpf_exporter_enabled_configs", "The set of enabled configs", "GAUGE", "name"},
}

// families parses an exposition into its families.
func families(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

func describe(mf *dto.MetricFamily) family {
	var labels []string
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if !slices.Contains(labels, l.GetName()) {
				labels = append(labels, l.GetName())
			}
		}
	}
	sort.Strings(labels)
	return family{mf.GetName(), mf.GetHelp(), mf.GetType().String(), strings.Join(labels, ",")}
}

// dropInDir writes the two configs and a link named ebpf_exporter to the
// built binary.
func dropInDir(t *testing.T) (configs, link string) {
	t.Helper()
	configs = t.TempDir()
	writeConfig(t, configs, "dropin", dropinProg, dropinYAML)
	writeConfig(t, configs, "unattached", unattachedProg, unattachedYAML)
	link = filepath.Join(t.TempDir(), "ebpf_exporter")
	if err := os.Symlink(binaryPath, link); err != nil {
		t.Fatal(err)
	}
	return configs, link
}

// TestEbpfExporterDropIn runs the built binary under the name
// ebpf_exporter with nothing but ebpf_exporter's flags, as a systemd unit
// or DaemonSet written for ebpf_exporter runs it: it must listen on
// ebpf_exporter's port and serve the families ebpf_exporter serves, with
// the same names, help, types and labels, for a config that works and for
// one whose program does not attach.
func TestEbpfExporterDropIn(t *testing.T) {
	configs, link := dropInDir(t)
	// Every flag ebpf_exporter v2.5.1 has, as its users pass them, except
	// --web.listen-address (its default is what is tested) and
	// --config.check (TestEbpfExporterDropInCheck).
	args := []string{
		"--config.dir=" + configs, "--config.names=dropin,unattached",
		"--debug", "--log.no-timestamps", "--web.telemetry-path=/metrics",
		"--capabilities.keep=all", "--btf.path=/sys/kernel/btf/vmlinux", "--config.skip-cache-size=1024",
	}
	l, err := net.Listen("tcp", ebpfExporterListen)
	if err != nil {
		t.Skipf("ebpf_exporter's port is taken on this machine: %v", err)
	}
	l.Close()
	const addr = "127.0.0.1:9435"
	p := startBinary(t, link, func() bool { return serves(addr) }, args...)
	workload(t, "dropin_w", 100)
	testkit.Eventually(t, "the workload is counted", func() bool {
		_, body := get(t, "http://"+addr+"/metrics")
		return strings.Contains(body, `ebpf_exporter_dropin_calls_total{comm="dropin_w"}`)
	})
	_, body := get(t, "http://"+addr+"/metrics")
	mfs := families(t, body)
	for _, want := range ebpfExporterFamilies {
		mf, ok := mfs[want.Name]
		if !ok {
			t.Errorf("family %s is missing", want.Name)
			continue
		}
		got := describe(mf)
		if want.Name == "ebpf_exporter_dropin_syscall_ids" {
			want.Labels = "" // le is not a label in the parsed family
		}
		if got != want {
			t.Errorf("family differs from ebpf_exporter's:\n got  %+v\n want %+v", got, want)
		}
	}
	// None of them is served under probe_exporter's name as well.
	for _, f := range append(ebpfExporterFamilies, family{Name: "ebpf_exporter_program_attached"}) {
		name := "probe_exporter_" + strings.TrimPrefix(f.Name, "ebpf_exporter_")
		if _, ok := mfs[name]; ok {
			t.Errorf("%s is served beside %s", name, f.Name)
		}
	}
	// The config whose program did not attach keeps the families
	// dashboards and absent() alerts read, as under ebpf_exporter.
	for _, want := range []string{
		`ebpf_exporter_enabled_configs{name="unattached"} 1`,
		`ebpf_exporter_decoder_errors_total{config="unattached"} 0`,
		`ebpf_exporter_enabled_configs{name="dropin"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("missing %q in\n%s", want, grep(body, "ebpf_exporter_"))
		}
	}
	if !strings.Contains(grep(body, "ebpf_exporter_ebpf_program_attached"), "} 0") {
		t.Errorf("the unattached program is not reported as detached:\n%s", grep(body, "ebpf_exporter_ebpf_program"))
	}
	// --log.no-timestamps: no line carries a time.
	if strings.Contains(p.Log(), "time=") {
		t.Errorf("--log.no-timestamps: the log has times:\n%s", tail(p.Log(), 5))
	}
	// --debug serves ebpf_exporter's /maps.
	if code, _ := get(t, "http://"+addr+"/maps"); code != 200 {
		t.Errorf("/maps with --debug: %d", code)
	}
}

// TestEbpfExporterDropInCheck: under ebpf_exporter's name, --config.check
// exits as ebpf_exporter's does: 0 when every config loads, even with
// programs not attached, 1 with --config.strict; under its own name the
// binary keeps its stricter check, and --compat=ebpf_exporter gives
// ebpf_exporter's.
func TestEbpfExporterDropInCheck(t *testing.T) {
	configs, link := dropInDir(t)
	base := []string{"--config.dir=" + configs, "--config.names=dropin,unattached", "--config.check"}
	for _, tc := range []struct {
		name string
		bin  string
		args []string
		code int
	}{
		{"ebpf_exporter", link, nil, 0},
		{"ebpf_exporter strict", link, []string{"--config.strict"}, 1},
		{"probe_exporter", binaryPath, nil, 1},
		{"compat flag", binaryPath, []string{"--compat=ebpf_exporter"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.bin, append(base, tc.args...)...)
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, tail(string(out), 20))
			}
		})
	}
	// A config that does not load fails the check under either name.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "broken.yaml"), []byte("metrics: [\n"), 0o644)
	for _, bin := range []string{link, binaryPath} {
		if code := runPath(t, bin, "--config.dir="+bad, "--config.names=broken", "--config.check"); code != 1 {
			t.Errorf("%s --config.check of a broken config exited %d, want 1", filepath.Base(bin), code)
		}
	}
}

// runPath runs the binary at path to its end and returns its exit code.
func runPath(t *testing.T, path string, args ...string) int {
	t.Helper()
	out, err := exec.Command(path, args...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, out)
	}
	return 0
}
