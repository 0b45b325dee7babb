// Package collector serves loaded eBPF configs to Prometheus at scrape
// time: the counters, gauges and histograms their maps hold, and whether
// they and their programs are up.
//
// Collector wires its parts over one set of configs; each does one job:
//
//   - Config (config.go): one loaded config and its map metrics, which it
//     scrapes into frames, deletes the keys of exited processes from
//     (droppid.go) and dumps raw for /maps (DumpMaps, dump.go);
//   - configBuilder (newconfig.go): the metrics of a loaded object, with
//     multi-value maps (multivalue.go) and expiring keys (expire.go);
//   - registry (registry.go): the configs being served;
//   - stateCollector (state.go, names.go): config_up, the programs'
//     metrics, scrape durations, decoder errors, expired entries;
//   - gatherer (gather.go): every config's frames once per scrape, and
//     Gather over them;
//   - Handler (handler.go, expose.go): /metrics, the frames written out
//     without building metric families.
//
// Below them, mapMetric (metric.go) caches a map's keys decoded to label
// blocks, over a mapReader (mapreader.go) that reads the map in batches.
package collector

import (
	"log/slog"

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
	// EventsMaxSeries bounds the label sets of each events metric
	// (DefaultEventsMaxSeries when 0): records making new ones past it are
	// dropped and counted.
	EventsMaxSeries int
}

// Collector is the collector package's parts wired over the configs being
// served. It is the prometheus.Collector of their state and the
// prometheus.Gatherer of their maps.
type Collector struct {
	configs *registry
	builder *configBuilder
	state   *stateCollector
	gather  *gatherer
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
	configs := &registry{}
	state := newStateCollector(configs, opts.StatsPath, opts.MetricPrefix)
	return &Collector{
		configs: configs,
		builder: &configBuilder{
			prefix:          opts.MetricPrefix,
			env:             opts.Env,
			exits:           opts.Exits,
			procRoot:        opts.ProcRoot,
			decoderErrors:   state.decoderErrors,
			expired:         state.expired,
			eventsDropped:   state.eventsDropped,
			eventsMaxSeries: opts.EventsMaxSeries,
		},
		state:  state,
		gather: &gatherer{configs: configs, logger: opts.Logger},
	}
}

// NewConfig sets up the metrics of a loaded object: every metric's map must
// exist and its labels must match the map's key size.
func (c *Collector) NewConfig(obj *loader.Object) *Config { return c.builder.build(obj) }

// FailedConfig stands for a config that did not parse: it reports the
// config as down and has no maps.
func (c *Collector) FailedConfig(cfg config.Config, err error) *Config {
	fc := failedConfig(cfg, err)
	fc.decodeErrs = c.state.decoderErrors.WithLabelValues(cfg.Name)
	return fc
}

// SetConfigs replaces the configs being served.
func (c *Collector) SetConfigs(cfgs []*Config) { c.configs.set(cfgs) }

// Configs returns the configs being served.
func (c *Collector) Configs() []*Config { return c.configs.list() }

// DropPID deletes the map entries of an exited process from the maps of
// the configs named config (Config.DropPID).
func (c *Collector) DropPID(config string, pid int) {
	for _, cfg := range c.configs.list() {
		if cfg.Name() == config {
			cfg.DropPID(pid)
		}
	}
}

// DecoderErrors is the decoder_errors_total counter of a config, for
// other readers of its maps (tracing spans).
func (c *Collector) DecoderErrors(config string) prometheus.Counter {
	return c.state.decoderErrors.WithLabelValues(config)
}

// Describe sends nothing: the metric set depends on the configs loaded,
// so the collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect reports the state of configs and programs. Map metrics are not
// collected here but by Gather.
func (c *Collector) Collect(ch chan<- prometheus.Metric) { c.state.Collect(ch) }

// Gather reads every config's maps into metric families. It implements
// prometheus.Gatherer (serve it with prometheus.Gatherers{registry,
// collector}); Handler serves the same families without building them.
// Families come out with their series sorted as the registry sorts them.
func (c *Collector) Gather() ([]*dto.MetricFamily, error) { return c.gather.Gather() }
