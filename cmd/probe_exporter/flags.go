package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	pweb "github.com/probe-exporter/probe_exporter/web"
)

type flags struct {
	configDir    string
	configNames  string
	check        bool
	strict       bool
	metricPrefix string
	btfPath      string
	cacheDir     string

	web           *web.FlagConfig
	log           *promslog.Config
	port          int
	telemetryPath string
	maxRequests   int
	maxConns      int
	debug         bool
	enableReload  bool

	eventsMaxSeries int

	scriptsDir        string
	scriptsKeepalive  durationOrSeconds
	scriptsStartWait  time.Duration
	scriptsMaxRunning int
	scriptsMaxOutput  int
	scriptsTimeout    time.Duration
	scriptsTimeouts   scriptTimeouts
	scriptsMinInt     time.Duration

	capsKeep string
	runAs    string

	rulesFile        string
	profileConfig    string
	profileFrequency int
	profileInterval  time.Duration
	profileOffCPUMin time.Duration
	ingestMaxBytes   int64

	ingestMaxDecompressed int64
	ingestMaxInflight     int64
	ingestBodyTimeout     time.Duration
	rulesMaxSeries        int

	kube kubeFlags

	// compat is the compatibility mode (compatEbpfExporter or "").
	compat        string
	noTimestamps  bool
	skipCacheSize int
}

// registerFlags registers the flags, with the defaults of the
// compatibility mode (compatMode) and listen as --web.listen-address's,
// in the order --help lists them: one group per part (eBPF configs, HTTP,
// scripts, profiles, privileges, logging and compatibility), as
// docs/operations.md's table has them.
func registerFlags(app *kingpin.Application, compat, listen string) *flags {
	f := &flags{compat: compat, log: &promslog.Config{}}
	prefix := "probe_exporter"
	if compat == compatEbpfExporter {
		prefix = "ebpf_exporter"
	}

	// eBPF configs.
	app.Flag("config.dir", "Directory of configs: NAME.yaml next to NAME.bpf.o (ebpf_exporter layout). Without it, the embedded default programs run.").StringVar(&f.configDir)
	app.Flag("config.names", "Comma separated names of configs to load from --config.dir (default: every *.yaml there).").StringVar(&f.configNames)
	app.Flag("config.check", "Load and attach every config, report, and exit 0 if all succeeded, 1 otherwise.").BoolVar(&f.check)
	app.Flag("config.strict", "Any config, load or attach failure is fatal.").BoolVar(&f.strict)
	app.Flag("metrics.prefix", "Prefix of metrics read from maps (\"ebpf_exporter\" gives ebpf_exporter's names).").Default(prefix).StringVar(&f.metricPrefix)
	app.Flag("btf.path", "Kernel BTF file for CO-RE relocations and inline code on kernels without /sys/kernel/btf/vmlinux (as ebpf_exporter's).").StringVar(&f.btfPath)
	app.Flag("compiler.cache-dir", "Where inline code's translation from bcc's dialect, vmlinux.h and compiled objects are kept, keyed by the code and the kernel's BTF (default /var/cache/probe_exporter, made 0700; a fresh private temporary directory, logged, when it cannot be made). It must be private: it and every directory above it owned by root and writable by no one else (sticky root directories such as /tmp above it excepted), else configs with inline code fail with \"not private\". A persistent directory spares compiling again at each start; one filled ahead for a kernel (--config.check --btf.path=ITS-BTF) serves that kernel read only, without clang or bpftool.").StringVar(&f.cacheDir)
	app.Flag("events.max-series", "Most label sets per events metric (counters and histograms fed by ring buffer or perf event array records); records making new ones over it are dropped and counted in probe_exporter_event_records_dropped_total{reason=\"series_limit\"}.").Default("10000").IntVar(&f.eventsMaxSeries)
	app.Flag("config.skip-cache-size", "Accepted for ebpf_exporter's command lines and ignored: keys a decoder skips are remembered per map key, evicted with the key, without a separate cache.").Hidden().IntVar(&f.skipCacheSize)
	registerKubernetesFlags(app, &f.kube)

	// HTTP: exporter-toolkit's listen, socket activation and TLS flags
	// first, then the server's own.
	f.web = kingpinflag.AddFlags(app, listen)
	app.Flag("port", "Listen on this TCP port on all addresses (stap-exporter's -p); overrides --web.listen-address.").Short('p').IntVar(&f.port)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&f.telemetryPath)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests (0: no limit).").Default("40").IntVar(&f.maxRequests)
	app.Flag("web.max-connections", "Most HTTP connections open at once (0: no limit; at most half the open file limit): past it the connection waiting longest without a request (idle keep-alive, or still sending its headers) is closed, so that idle or slow clients cannot exhaust file descriptors or memory.").Default(strconv.Itoa(pweb.DefaultMaxConnections)).IntVar(&f.maxConns)
	app.Flag("web.enable-reload", "Serve POST /-/reload (refused to cross-site browser requests); --no-web.enable-reload answers it 404, and SIGHUP still reloads.").Default("true").BoolVar(&f.enableReload)
	app.Flag("debug", "Enable /maps (raw map contents) and /debug/pprof.").BoolVar(&f.debug)

	// Scripts.
	app.Flag("scripts.dir", "Directory of scripts (*.stp, *.bt, executables) served at /NAME.").Short('s').StringVar(&f.scriptsDir)
	app.Flag("scripts.keepalive", "Stop a script this long after its last request: seconds or a duration (0: never).").Short('k').Default("0").SetValue(&f.scriptsKeepalive)
	app.Flag("scripts.start-wait", "How long a first request waits for a starting script's first output before answering 503.").Default("2s").DurationVar(&f.scriptsStartWait)
	app.Flag("scripts.max-running", "Most scripts running at once (0: no limit).").Default("64").IntVar(&f.scriptsMaxRunning)
	app.Flag("scripts.max-output", "Largest output kept per script, in bytes.").Default("16777216").IntVar(&f.scriptsMaxOutput)
	app.Flag("scripts.timeout", "How long one run of a one-shot executable (one that prints its metrics and exits 0) may take before it is killed and the request answers 504; also how long an executable's first request waits for its output.").Default("10s").DurationVar(&f.scriptsTimeout)
	app.Flag("scripts.script-timeout", "NAME=DURATION: --scripts.timeout for one script (repeatable).").PlaceHolder("NAME=DURATION").SetValue(&f.scriptsTimeouts)
	app.Flag("scripts.min-interval", "How long a one-shot executable's output is reused before a request runs it again (0: every request runs it); autostart one-shot scripts run this often (at least every second).").Default("5s").DurationVar(&f.scriptsMinInt)

	// Profiles: the built-in profiler, the export rules and /ingest.
	app.Flag("profile.config", "Profiler targets file: processes to profile with the built-in eBPF CPU profiler.").StringVar(&f.profileConfig)
	app.Flag("profile.frequency", "Sampling frequency of the built-in CPU profiler, in Hz.").Default("100").IntVar(&f.profileFrequency)
	app.Flag("profile.interval", "How often profiles are drained into the rules.").Default("10s").DurationVar(&f.profileInterval)
	app.Flag("profile.off-cpu-min", "Shortest blocked time recorded as off-CPU time by profile targets with off_cpu: true (0: all of it).").Default("0s").DurationVar(&f.profileOffCPUMin)
	app.Flag("rules.file", "Pyroscope metrics-export-rules file: profiles matched by the rules become counters.").StringVar(&f.rulesFile)
	app.Flag("rules.max-series", "Most label sets per profile rule; profiles making new ones over it are dropped and counted in probe_exporter_rule_series_dropped_total.").Default("10000").IntVar(&f.rulesMaxSeries)
	app.Flag("ingest.max-bytes", "Largest body accepted by /ingest.").Default("16777216").Int64Var(&f.ingestMaxBytes)
	app.Flag("ingest.max-decompressed-bytes", "Largest /ingest body after gzip decompression, counted while decompressing.").Default("67108864").Int64Var(&f.ingestMaxDecompressed)
	app.Flag("ingest.max-inflight-bytes", "Memory all /ingest pushes being read and decoded may hold together; over it a push is answered 503 with Retry-After.").Default("134217728").Int64Var(&f.ingestMaxInflight)
	app.Flag("ingest.body-timeout", "How long an /ingest client has to send its body (408 after).").Default("30s").DurationVar(&f.ingestBodyTimeout)

	// Privileges.
	app.Flag("capabilities.keep", "Capabilities kept once started: \"auto\" keeps what the configured features need (said at start and on the landing page), \"all\" keeps every one, a list (CAP_BPF,CAP_PERFMON,...) keeps those. The rest are dropped, from the bounding set too, so scripts cannot regain them.").
		Default("auto").StringVar(&f.capsKeep)
	app.Flag("runas.user", "Once started, run as this user (name or uid) with the kept capabilities. Scripts then run as that user without capabilities: bpftrace and systemtap scripts cannot work.").StringVar(&f.runAs)

	// Logging and compatibility.
	promslogflag.AddFlags(app, f.log)
	app.Flag("log.no-timestamps", "Leave the time out of log lines (as ebpf_exporter's flag; journald stamps lines itself).").BoolVar(&f.noTimestamps)
	app.Flag("compat", "Stand in for another exporter: \"ebpf_exporter\" takes cloudflare ebpf_exporter v2's defaults (listen on :9435, its metric names, tracing to the OTLP default endpoint, its --config.check exit code), as invoking the binary under the name ebpf_exporter does.").
		PlaceHolder("ebpf_exporter").EnumVar(&f.compat, "", compatEbpfExporter)
	return f
}

// names splits --config.names.
func (f *flags) names() []string {
	var out []string
	for _, n := range strings.Split(f.configNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// scriptTimeouts is --scripts.script-timeout, NAME=DURATION repeated.
type scriptTimeouts map[string]time.Duration

func (m *scriptTimeouts) Set(s string) error {
	name, d, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q: want NAME=DURATION", s)
	}
	v, err := time.ParseDuration(d)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q: want NAME=DURATION with a positive duration", s)
	}
	if *m == nil {
		*m = scriptTimeouts{}
	}
	(*m)[name] = v
	return nil
}

func (m *scriptTimeouts) String() string { return fmt.Sprint(map[string]time.Duration(*m)) }

// IsCumulative makes the flag repeatable.
func (m *scriptTimeouts) IsCumulative() bool { return true }

// durationOrSeconds accepts "60" (seconds, as stap-exporter) or "1m".
type durationOrSeconds time.Duration

func (d *durationOrSeconds) Set(s string) error {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return fmt.Errorf("negative duration %q", s)
		}
		*d = durationOrSeconds(time.Duration(n * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is neither seconds nor a duration", s)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", s)
	}
	*d = durationOrSeconds(v)
	return nil
}

func (d *durationOrSeconds) String() string { return time.Duration(*d).String() }

func timeOf(d durationOrSeconds) time.Duration { return time.Duration(d) }
