package loader

import (
	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/attach"
)

// perfEvent is the event a config's perf_events entry or SEC("perf_event/...")
// describes.
func perfEvent(pe config.PerfEvent) attach.PerfEvent {
	return attach.PerfEvent{Type: pe.Type, Config: pe.Name, Period: pe.SamplePeriod, Frequency: pe.SampleFrequency}
}
