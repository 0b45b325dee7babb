package collector

import (
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/loader"
)

// Config is one loaded config and the metrics read from its maps. It owns
// those maps' reading (scrape), the deletion of their keys (DropPID) and
// their raw dump (DumpMaps).
type Config struct {
	Object  *loader.Object
	metrics []*mapMetric
	// events are the metrics fed by records of ring buffers and perf
	// event arrays, sources those maps.
	events  []*eventMetric
	sources []*EventSource
	// Err is set when the config's metrics could not be set up (a map
	// missing, labels not matching keys).
	Err error
	// decodeErrs counts the config's keys whose labels do not decode.
	decodeErrs prometheus.Counter

	mu           sync.Mutex // serializes scrapes of this config
	lastDuration time.Duration
	scrapeErrors float64
	// lastBytes is the size of its families in the last /metrics answer.
	lastBytes atomic.Int64
}

// Name is the config name.
func (cfg *Config) Name() string { return cfg.Object.Config.Name }

// Up reports whether the config fully works.
func (cfg *Config) Up() bool {
	return cfg.Err == nil && !cfg.Object.Failed()
}

// serving reports whether the config has metrics to read: it loaded and
// its metrics were set up.
func (cfg *Config) serving() bool {
	return cfg.Err == nil && cfg.Object.Err == nil
}

// Close detaches the config's programs and releases its maps.
func (cfg *Config) Close() error {
	return cfg.Object.Close()
}

// failedConfig stands for a config that did not parse: it reports the
// config as down and has no maps.
func failedConfig(cfg config.Config, err error) *Config {
	return &Config{Object: &loader.Object{Config: cfg, Err: err}, Err: err}
}

// scrape appends the frames of the config's maps. When a map's caches
// grew a lot (its first scrape, or a map filling up), the garbage of
// their growth is returned to the system at once rather than kept as
// headroom by the Go runtime: it is a few times the caches' size, and
// would otherwise stay in the process's RSS.
func (cfg *Config) scrape(frames []*frame, logger *slog.Logger) []*frame {
	grew := false
	defer func() {
		if grew {
			debug.FreeOSMemory()
		}
	}()
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	start := time.Now()
	for _, mm := range cfg.metrics {
		f, grown, err := mm.collect(cfg.decodeErrs)
		grew = grew || grown
		if err != nil {
			cfg.scrapeErrors++
			logger.Warn("scrape failed", "config", cfg.Name(), "metric", mm.name, "err", err)
		}
		if f != nil {
			frames = append(frames, f)
			frames = mm.valueFrames(f, frames)
		}
	}
	frames = cfg.scrapeEvents(frames)
	cfg.lastDuration = time.Since(start)
	return frames
}

// scrapeStats are the duration of the last scrape (0: never scraped) and
// the number of failed ones.
func (cfg *Config) scrapeStats() (time.Duration, float64) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	return cfg.lastDuration, cfg.scrapeErrors
}
