package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
)

// flagGroups are --help's groups in their order, each by the prefixes of
// its flags' names.
var flagGroups = [][]string{
	{"help", "config.", "metrics.", "btf.", "compiler.", "events.", "kubernetes."},
	{"web.", "port", "debug"},
	{"scripts."},
	{"profile.", "rules.", "ingest."},
	{"capabilities.", "runas."},
	{"log.", "compat", "version"},
}

func flagGroup(name string) int {
	for i, g := range flagGroups {
		for _, p := range g {
			if name == p || strings.HasSuffix(p, ".") && strings.HasPrefix(name, p) {
				return i
			}
		}
	}
	return -1
}

// TestFlagsGrouped: --help lists the flags group by group (eBPF configs,
// HTTP, scripts, profiles, privileges, logging and compatibility), each
// with a description, and hides only the flag ebpf_exporter's command
// lines carry and this exporter ignores: no flag exists for tests alone.
func TestFlagsGrouped(t *testing.T) {
	for _, compat := range []string{"", compatEbpfExporter} {
		app := kingpin.New("probe_exporter", "")
		registerFlags(app, compat, ":9900")
		app.Version("v")
		last := 0
		var hidden []string
		for _, f := range app.Model().Flags {
			if f.Hidden {
				// kingpin's own: --help-long, --help-man, shell completion.
				if !strings.HasPrefix(f.Name, "help-") && !strings.HasPrefix(f.Name, "completion-") {
					hidden = append(hidden, f.Name)
				}
				continue
			}
			g := flagGroup(f.Name)
			switch {
			case g < 0:
				t.Errorf("--%s belongs to no group of --help", f.Name)
			case g < last:
				t.Errorf("--%s (group %d) listed after a flag of group %d", f.Name, g, last)
			default:
				last = g
			}
			if strings.TrimSpace(f.Help) == "" {
				t.Errorf("--%s has no description", f.Name)
			}
		}
		if strings.Join(hidden, ",") != "config.skip-cache-size" {
			t.Errorf("hidden flags %v, want only config.skip-cache-size", hidden)
		}
	}
}

// TestHelpOnStdout: the built binary answers --help and --version on
// standard output with exit 0 (so `probe_exporter --help | less` pages
// it), and a wrong flag on standard error with exit 2.
func TestHelpOnStdout(t *testing.T) {
	run := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(binaryPath, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if e, ok := err.(*exec.ExitError); ok {
			code = e.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	out, errOut, code := run("--help")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: probe_exporter") || !strings.Contains(out, "--config.dir") {
		t.Errorf("--help: exit %d, stderr %q, stdout %.200q", code, errOut, out)
	}
	out, errOut, code = run("--version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "probe_exporter, version ") {
		t.Errorf("--version: exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	out, errOut, code = run("--no-such-flag")
	if code != 2 || out != "" || !strings.Contains(errOut, "no-such-flag") {
		t.Errorf("--no-such-flag: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
