// Package collector turns the maps of loaded configs into Prometheus
// metrics at scrape time, and reports the state of configs and programs.
package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
	"github.com/probe-exporter/probe_exporter/loader"
)

// Namespace prefixes the exporter's own metrics.
const Namespace = "probe_exporter"

// Options configure a Collector.
type Options struct {
	// MetricPrefix prefixes metrics read from maps ("probe_exporter" by
	// default; "ebpf_exporter" gives ebpf_exporter's names).
	MetricPrefix string
	Env          *decoder.Env
	Logger       *slog.Logger
	// StatsPath is the sysctl telling whether the kernel counts program
	// run time (kernel.bpf_stats_enabled).
	StatsPath string
	// Exits reports process exits to metrics whose keys carry a pid
	// (expire.go); nil: exits are found in ProcRoot after each scrape.
	Exits ProcessExits
	// ProcRoot is the proc file system ("/proc").
	ProcRoot string
}

// Collector is a prometheus.Collector over every loaded config.
type Collector struct {
	opts Options

	mu      sync.RWMutex
	configs []*Config

	decoderErrors *prometheus.CounterVec
	expired       *prometheus.CounterVec
	enabled       *prometheus.Desc
	configUp      *prometheus.Desc
	progInfo      *prometheus.Desc
	progAttached  *prometheus.Desc
	progRunTime   *prometheus.Desc
	progRunCount  *prometheus.Desc
	scrapeTime    *prometheus.Desc
	scrapeErrors  *prometheus.Desc
	// byID labels programs by id alone, as ebpf_exporter does.
	byID bool
}

// New returns a collector with no configs.
func New(opts Options) *Collector {
	if opts.MetricPrefix == "" {
		opts.MetricPrefix = Namespace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StatsPath == "" {
		opts.StatsPath = "/proc/sys/kernel/bpf_stats_enabled"
	}
	if opts.Env == nil {
		opts.Env = &decoder.Env{}
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	c := &Collector{
		opts: opts,
		decoderErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "decoder_errors_total",
			Help: "Map keys whose labels could not be decoded, by config.",
		}, []string{"config"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "map_entries_expired_total",
			Help: "Map entries the exporter deleted from kernel maps after serving them: of exited processes (process_exit) or unchanged for max_age (max_age).",
		}, []string{"config", "map", "reason"}),
		enabled:      d("enabled_configs", "The set of enabled configs (loaded, metrics set up).", "name"),
		configUp:     d("config_up", "Whether a config loaded, attached every program and set up its metrics (1) or failed in part or whole (0).", "config"),
		progInfo:     d("ebpf_program_info", "Info about loaded eBPF programs.", "config", "program", "tag", "id"),
		progAttached: d("program_attached", "Whether a program is attached (1) or failed to load or attach (0).", "config", "program"),
		progRunTime:  d("ebpf_program_run_time_seconds", "Time the program has run (kernel.bpf_stats_enabled=1).", "config", "program", "id"),
		progRunCount: d("ebpf_program_run_count_total", "Times the program has run (kernel.bpf_stats_enabled=1).", "config", "program", "id"),
		scrapeTime:   d("config_scrape_duration_seconds", "Time the last scrape of a config's maps took.", "config"),
		scrapeErrors: d("config_scrape_errors_total", "Scrapes of a config's maps that failed.", "config"),
	}
	if opts.MetricPrefix == EbpfExporterPrefix {
		c.useEbpfExporterNames()
	}
	return c
}

// NewConfig sets up the metrics of a loaded object: every metric's map must
// exist and its labels must match the map's key size.
func (c *Collector) NewConfig(obj *loader.Object) *Config {
	cfg := &Config{Object: obj}
	if obj.Err != nil || obj.Collection == nil {
		return cfg
	}
	var errs []error
	add := func(kind metricKind, name, mapName, help string, line int, labels []config.Label, h *config.Histogram, maxAge config.Duration) {
		m := obj.Map(mapName)
		where := fmt.Sprintf("%s:%d", path(obj.Config), line)
		if m == nil {
			errs = append(errs, fmt.Errorf("%s: metric %q: the object has no map %q (it has: %s)", where, name, mapName, strings.Join(mapNames(obj), ", ")))
			return
		}
		mm, err := newMapMetric(kind, prometheus.BuildFQName(c.opts.MetricPrefix, "", name), help, labels, m, h, c.opts.Env)
		var ks errKeySize
		switch {
		case errors.As(err, &ks):
			errs = append(errs, fmt.Errorf("%s: metric %q: labels take %d bytes (sizes + padding) but map %q has %d-byte keys", where, name, ks.labels, mapName, ks.key))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: metric %q: %w", where, name, err))
		default:
			if mm.expiry, err = c.newExpiry(obj.Config, mm, mapName, labels, maxAge); err != nil {
				errs = append(errs, fmt.Errorf("%s: metric %q: %w", where, name, err))
				return
			}
			cfg.metrics = append(cfg.metrics, mm)
		}
	}
	ms := obj.Config.Metrics
	values := func(kind metricKind, m config.Counter) {
		mm, err := c.newValuesMetric(obj, kind, m)
		if err != nil {
			errs = append(errs, err)
			return
		}
		cfg.metrics = append(cfg.metrics, mm)
	}
	for _, m := range ms.Counters {
		if m.Values != nil {
			values(kindCounter, m)
			continue
		}
		add(kindCounter, m.Name, m.MapName(), m.Help, m.Line, m.Labels, nil, m.MaxAge)
	}
	for _, m := range ms.Gauges {
		if m.Values != nil {
			values(kindGauge, m)
			continue
		}
		add(kindGauge, m.Name, m.MapName(), m.Help, m.Line, m.Labels, nil, m.MaxAge)
	}
	for i := range ms.Histograms {
		h := &ms.Histograms[i]
		add(kindHistogram, h.Name, h.MapName(), h.Help, h.Line, h.Labels, h, h.MaxAge)
	}
	cfg.Err = errors.Join(errs...)
	cfg.decodeErrs = c.decoderErrors.WithLabelValues(obj.Config.Name)
	return cfg
}

func path(cfg config.Config) string {
	if cfg.Path == "" {
		return "embedded:" + cfg.Name
	}
	return cfg.Path
}

func mapNames(obj *loader.Object) []string {
	var names []string
	for name := range obj.Collection.Maps {
		if !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	return names
}

// SetConfigs replaces the configs being served.
func (c *Collector) SetConfigs(cfgs []*Config) {
	c.mu.Lock()
	c.configs = cfgs
	c.mu.Unlock()
}

// Configs returns the configs being served.
func (c *Collector) Configs() []*Config {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*Config(nil), c.configs...)
}

// Describe sends nothing: the metric set depends on the configs loaded,
// so the collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect reports the state of configs and programs. Map metrics are not
// collected here but by Gather.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	statsOn := c.statsEnabled()
	for _, cfg := range c.Configs() {
		c.collectState(ch, cfg, statsOn)
		if d, errs := cfg.scrapeStats(); d > 0 {
			ch <- prometheus.MustNewConstMetric(c.scrapeTime, prometheus.GaugeValue, d.Seconds(), cfg.Name())
			ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.CounterValue, errs, cfg.Name())
		}
	}
	c.decoderErrors.Collect(ch)
	c.expired.Collect(ch)
}

// Gather reads every config's maps into metric families. It implements
// prometheus.Gatherer (serve it with prometheus.Gatherers{registry,
// collector}); Handler serves the same families without building them.
// Families come out with their series sorted as the registry sorts them.
func (c *Collector) Gather() ([]*dto.MetricFamily, error) {
	var mfs []*dto.MetricFamily
	for _, f := range c.collectFrames() {
		mfs = append(mfs, f.toDTO())
		f.release()
	}
	return mfs, nil
}

// collectFrames scrapes the maps of every config.
func (c *Collector) collectFrames() []*frame {
	var frames []*frame
	for _, cfg := range c.Configs() {
		if !cfg.serving() {
			continue
		}
		frames = cfg.scrape(frames, c.opts.Logger)
	}
	return frames
}

func (c *Collector) collectState(ch chan<- prometheus.Metric, cfg *Config, statsOn bool) {
	name := cfg.Name()
	up := 0.0
	if cfg.Up() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.configUp, prometheus.GaugeValue, up, name)
	if cfg.Err == nil && cfg.Object.Err == nil {
		ch <- prometheus.MustNewConstMetric(c.enabled, prometheus.GaugeValue, 1, name)
	}
	seen := map[string]bool{}
	for _, p := range cfg.Object.Programs {
		if p.Skipped || seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		attached := 0.0
		if p.Attached() {
			attached = 1
		}
		if !c.byID {
			ch <- prometheus.MustNewConstMetric(c.progAttached, prometheus.GaugeValue, attached, name, p.Name)
		}
		if p.Program == nil {
			continue
		}
		info, err := p.Program.Info()
		if err != nil {
			continue
		}
		id := ""
		if pid, ok := info.ID(); ok {
			id = strconv.FormatUint(uint64(pid), 10)
		}
		if c.byID {
			ch <- prometheus.MustNewConstMetric(c.progAttached, prometheus.GaugeValue, attached, id)
		}
		ch <- prometheus.MustNewConstMetric(c.progInfo, prometheus.GaugeValue, 1, name, p.Name, info.Tag, id)
		if !statsOn {
			continue
		}
		stats, err := p.Program.Stats()
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.progRunTime, prometheus.CounterValue, stats.Runtime.Seconds(), c.programLabels(name, p.Name, id)...)
		ch <- prometheus.MustNewConstMetric(c.progRunCount, prometheus.CounterValue, float64(stats.RunCount), c.programLabels(name, p.Name, id)...)
	}
}

func (c *Collector) statsEnabled() bool {
	data, err := os.ReadFile(c.opts.StatsPath)
	return err == nil && strings.TrimSpace(string(data)) == "1"
}

// FailedConfig stands for a config that did not parse: it reports the
// config as down and has no maps.
func (c *Collector) FailedConfig(cfg config.Config, err error) *Config {
	return failedConfig(cfg, err)
}

// DropPID deletes the map entries of an exited process from the maps of
// the configs named config (Config.DropPID).
func (c *Collector) DropPID(config string, pid int) {
	for _, cfg := range c.Configs() {
		if cfg.Name() == config {
			cfg.DropPID(pid)
		}
	}
}
