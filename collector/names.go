package collector

import "github.com/prometheus/client_golang/prometheus"

// EbpfExporterPrefix is the --metrics.prefix that makes the exporter
// answer as ebpf_exporter does: its own metrics take ebpf_exporter's
// names, labels and help too.
const EbpfExporterPrefix = "ebpf_exporter"

// useEbpfExporterNames replaces the descriptions of the metrics that
// ebpf_exporter also has with ebpf_exporter's: the same name, help and
// labels, so that dashboards and alerts written for it keep working.
// Programs are then identified by id alone in ebpf_program_attached and
// the run time and count. Metrics ebpf_exporter lacks (config_up, the
// scrape duration and errors) keep their probe_exporter names.
func (s *stateCollector) useEbpfExporterNames() {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(EbpfExporterPrefix, "", name), help, labels, nil)
	}
	s.byID = true
	s.decoderErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: EbpfExporterPrefix, Name: "decoder_errors_total",
		Help: "How many times has decoders encountered errors",
	}, []string{"config"})
	s.enabled = d("enabled_configs", "The set of enabled configs", "name")
	s.progInfo = d("ebpf_program_info", "Info about ebpf programs", "config", "program", "tag", "id")
	s.progAttached = d("ebpf_program_attached", "Whether a program is attached", "id")
	s.progRunTime = d("ebpf_program_run_time_seconds", "How long has the program been executing", "id")
	s.progRunCount = d("ebpf_program_run_count_total", "How many times has the program been executed", "id")
}

// programLabels are the label values of a program's attach state, run
// time and count.
func (s *stateCollector) programLabels(config, program, id string) []string {
	if s.byID {
		return []string{id}
	}
	return []string{config, program, id}
}
