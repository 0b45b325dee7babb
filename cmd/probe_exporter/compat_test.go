package main

import "testing"

func TestCompatMode(t *testing.T) {
	for _, tc := range []struct {
		argv0 string
		args  []string
		want  string
	}{
		{"/usr/bin/probe_exporter", nil, ""},
		{"/usr/bin/ebpf_exporter", nil, compatEbpfExporter},
		{"ebpf_exporter", []string{"--config.dir=x"}, compatEbpfExporter},
		{"./ebpf_exporter_old", nil, ""},
		{"probe_exporter", []string{"--compat=ebpf_exporter"}, compatEbpfExporter},
		{"probe_exporter", []string{"--compat", "ebpf_exporter"}, compatEbpfExporter},
		{"probe_exporter", []string{"--compat=other"}, ""},
		{"ebpf_exporter", []string{"--compat="}, ""},
		{"probe_exporter", []string{"--", "--compat=ebpf_exporter"}, ""},
		{"probe_exporter", []string{"--compat"}, ""},
	} {
		if got := compatMode(tc.argv0, tc.args); got != tc.want {
			t.Errorf("compatMode(%q, %q) = %q, want %q", tc.argv0, tc.args, got, tc.want)
		}
	}
}
