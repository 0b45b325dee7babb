package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// TestAttackPlantedConfigsAndScripts: files another user can change are
// not loaded or run by root. In a directory of root's, a config whose YAML
// is writable by all and one whose object is are refused, each named in
// the log with the reason, while a config of root's beside them serves; a
// scripts directory an unprivileged user made, with a script of theirs in
// it, is refused: the request answers 500 naming the reason and the
// script never runs.
func TestAttackPlantedConfigsAndScripts(t *testing.T) {
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"timers", "runqlat", "syscalls"} {
		if _, err := os.Stat(filepath.Join(examples, n+".bpf.o")); err != nil {
			testkit.RequireTools(t, "clang")
			if out, err := exec.Command("make", "-C", examples, n+".bpf.o").CombinedOutput(); err != nil {
				t.Fatalf("make: %v\n%s", err, out)
			}
		}
	}
	a := testkit.NewAttacker(t)
	configs := t.TempDir()
	if err := os.Chmod(configs, 0o755); err != nil {
		t.Fatal(err)
	}
	install := func(name string, yamlMode, objMode os.FileMode) {
		for ext, mode := range map[string]os.FileMode{".yaml": yamlMode, ".bpf.o": objMode} {
			data, err := os.ReadFile(filepath.Join(examples, name+ext))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(configs, name+ext)
			if err := os.WriteFile(p, data, mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	install("timers", 0o644, 0o644)
	install("runqlat", 0o666, 0o644)  // its YAML: anyone may rewrite it
	install("syscalls", 0o644, 0o666) // its object: anyone may replace it

	tmp := sharedTmp(t)
	scripts := filepath.Join(tmp, "scripts")
	ran := filepath.Join(tmp, "ran")
	a.Run(t, "mkdir -m 0755 "+scripts)
	a.WriteFile(t, filepath.Join(scripts, "evil.sh"), []byte("#!/bin/sh\ntouch "+ran+"\necho 'evil 1'\n"), 0o755)

	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr,
		"--config.dir="+configs, "--scripts.dir="+scripts)

	testkit.Eventually(t, "timers serves", func() bool {
		return hasLine(series(t, addr, `probe_exporter_config_up{config="timers"}`), `probe_exporter_config_up{config="timers"} 1`)
	})
	for _, c := range []string{"runqlat", "syscalls"} {
		if up := series(t, addr, `probe_exporter_config_up{config="`+c+`"}`); hasLine(up, `probe_exporter_config_up{config="`+c+`"} 1`) {
			t.Errorf("config %s, changeable by anyone, was loaded: %q", c, up)
		}
	}
	for _, want := range []string{
		filepath.Join(configs, "runqlat.yaml") + " is not private: writable by group or others",
		filepath.Join(configs, "syscalls.bpf.o") + " is not private: writable by group or others",
	} {
		if !strings.Contains(p.Log(), want) {
			t.Errorf("the log does not say %q:\n%s", want, tail(p.Log(), 30))
		}
	}

	code, body := get(t, "http://"+addr+"/evil.sh")
	if code != 500 || !strings.Contains(body, "not private") || strings.Contains(body, "evil 1") {
		t.Errorf("GET /evil.sh of the attacker's directory: %d %q, want 500 naming why it is refused", code, body)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("root ran the attacker's script")
	}
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("panic:\n%s", p.Log())
	}
}
