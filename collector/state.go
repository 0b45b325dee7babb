package collector

import (
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector is the prometheus.Collector of the configs' state: which
// are up and enabled, their programs (attached, info, run time and count),
// the last scrape of their maps, and the keys that failed to decode or
// expired.
type stateCollector struct {
	configs   *registry
	statsPath string // kernel.bpf_stats_enabled

	decoderErrors *prometheus.CounterVec
	expired       *prometheus.CounterVec
	eventsDropped *prometheus.CounterVec
	eventRecords  *prometheus.Desc
	eventsLost    *prometheus.Desc
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

// newStateCollector describes the state metrics with probe_exporter's
// names, or ebpf_exporter's (names.go) when the prefix is its.
func newStateCollector(configs *registry, statsPath, prefix string) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	s := &stateCollector{
		configs:   configs,
		statsPath: statsPath,
		decoderErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "decoder_errors_total",
			Help: "Map keys whose labels could not be decoded, by config.",
		}, []string{"config"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "map_entries_expired_total",
			Help: "Map entries the exporter deleted from kernel maps after serving them: of exited processes (process_exit) or unchanged for max_age (max_age).",
		}, []string{"config", "map", "reason"}),
		eventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "event_records_dropped_total",
			Help: "Ring buffer and perf event array records an events metric did not count: shorter than its labels and value (malformed) or making a label set past --events.max-series (series_limit).",
		}, []string{"config", "metric", "reason"}),
		eventRecords: d("event_records_total", "Records read from a ring buffer or perf event array.", "config", "map"),
		eventsLost:   d("event_records_lost_total", "Records a ring buffer or perf event array had no room for: perf samples the kernel lost, or what a ring buffer's program counted in its NAME_lost map.", "config", "map"),
		enabled:      d("enabled_configs", "The set of enabled configs (loaded, metrics set up).", "name"),
		configUp:     d("config_up", "Whether a config loaded, attached every program and set up its metrics (1) or failed in part or whole (0).", "config"),
		progInfo:     d("ebpf_program_info", "Info about loaded eBPF programs.", "config", "program", "tag", "id"),
		progAttached: d("program_attached", "Whether a program is attached (1) or failed to load or attach (0).", "config", "program"),
		progRunTime:  d("ebpf_program_run_time_seconds", "Time the program has run (kernel.bpf_stats_enabled=1).", "config", "program", "id"),
		progRunCount: d("ebpf_program_run_count_total", "Times the program has run (kernel.bpf_stats_enabled=1).", "config", "program", "id"),
		scrapeTime:   d("config_scrape_duration_seconds", "Time the last scrape of a config's maps took.", "config"),
		scrapeErrors: d("config_scrape_errors_total", "Scrapes of a config's maps that failed.", "config"),
	}
	if prefix == EbpfExporterPrefix {
		s.useEbpfExporterNames()
	}
	return s
}

// Describe sends nothing: the metric set depends on the configs loaded,
// so the collector is unchecked.
func (s *stateCollector) Describe(chan<- *prometheus.Desc) {}

// Collect reports the state of every config.
func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	statsOn := s.statsEnabled()
	for _, cfg := range s.configs.list() {
		s.collectConfig(ch, cfg, statsOn)
		if d, errs := cfg.scrapeStats(); d > 0 {
			ch <- prometheus.MustNewConstMetric(s.scrapeTime, prometheus.GaugeValue, d.Seconds(), cfg.Name())
			ch <- prometheus.MustNewConstMetric(s.scrapeErrors, prometheus.CounterValue, errs, cfg.Name())
		}
		for _, src := range cfg.sources {
			if !src.running.Load() {
				continue
			}
			records, lost, known := src.counts()
			ch <- prometheus.MustNewConstMetric(s.eventRecords, prometheus.CounterValue, float64(records), cfg.Name(), src.Map)
			if known {
				ch <- prometheus.MustNewConstMetric(s.eventsLost, prometheus.CounterValue, float64(lost), cfg.Name(), src.Map)
			}
		}
	}
	s.decoderErrors.Collect(ch)
	s.expired.Collect(ch)
	s.eventsDropped.Collect(ch)
}

// collectConfig reports whether a config is up and enabled, and its
// programs.
func (s *stateCollector) collectConfig(ch chan<- prometheus.Metric, cfg *Config, statsOn bool) {
	name := cfg.Name()
	up := 0.0
	if cfg.Up() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(s.configUp, prometheus.GaugeValue, up, name)
	// ebpf_exporter lists every config it was given as enabled (it
	// stops when one does not load), attached or not.
	if cfg.serving() || s.byID {
		ch <- prometheus.MustNewConstMetric(s.enabled, prometheus.GaugeValue, 1, name)
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
		if !s.byID {
			ch <- prometheus.MustNewConstMetric(s.progAttached, prometheus.GaugeValue, attached, name, p.Name)
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
		if s.byID {
			ch <- prometheus.MustNewConstMetric(s.progAttached, prometheus.GaugeValue, attached, id)
		}
		ch <- prometheus.MustNewConstMetric(s.progInfo, prometheus.GaugeValue, 1, name, p.Name, info.Tag, id)
		if !statsOn {
			continue
		}
		stats, err := p.Program.Stats()
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(s.progRunTime, prometheus.CounterValue, stats.Runtime.Seconds(), s.programLabels(name, p.Name, id)...)
		ch <- prometheus.MustNewConstMetric(s.progRunCount, prometheus.CounterValue, float64(stats.RunCount), s.programLabels(name, p.Name, id)...)
	}
}

// statsEnabled reports whether the kernel counts program run time.
func (s *stateCollector) statsEnabled() bool {
	data, err := os.ReadFile(s.statsPath)
	return err == nil && strings.TrimSpace(string(data)) == "1"
}
