package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// TestAttackFakePython: a local user with no privilege runs fake CPython
// interpreters (testdata/fakepython.c: files named python3.12, python3.13
// and python3.9 exporting the interpreter's symbols) that the built binary,
// root with default flags, profiles. Each lies in its own way:
//
//   - version, back, notstr, offsets: the layout does not check out (the
//     version in Py_Version, the thread state's interpreter, a code
//     object's name that is not a str, 3.13's _Py_DebugOffsets outside
//     their structs): counted as a mismatch, and the stacks stay native;
//   - old: a 3.9 is counted unsupported, its stacks native;
//   - frames: checks out, then its frame chain turns into a cycle whose
//     names have lengths of 2^20 and 2^40 characters, ';' and line breaks,
//     a name that is not a str and a file name that is a root-only file's
//     path: the walk ends at the frame limit (truncated), the separator
//     and line breaks become '?', the non-str name stays unnamed, the
//     huge one keeps its last bytes, and nothing of the root-only file
//     shows.
//
// All the while /metrics answers, nothing panics, VmHWM stays under the
// README's 512 MiB, no fake process is left stopped, and SIGTERM ends the
// exporter with 0.
func TestAttackFakePython(t *testing.T) {
	a := testkit.NewAttacker(t)
	secretPath, marker := testkit.Secret(t)
	src, err := os.ReadFile("testdata/fakepython.c")
	if err != nil {
		t.Fatal(err)
	}
	tag := strconv.Itoa(os.Getpid() % 10000)
	// Each fake: its lie, its file's name, its Py_Version, its comm.
	type fake struct{ lie, file, version, comm string }
	fakes := []fake{
		{"version", "python3.12", "0x030b07f0", "fkv" + tag},
		{"back", "python3.12", "0x030c01f0", "fkb" + tag},
		{"notstr", "python3.12", "0x030c01f0", "fkn" + tag},
		{"offsets", "python3.13", "0x030d00f0", "fko" + tag},
		{"old", "python3.9", "0x030912f0", "fkold" + tag},
		{"frames", "python3.12", "0x030c01f0", "fkf" + tag},
	}
	dir := t.TempDir()
	var targets strings.Builder
	targets.WriteString("targets:\n")
	for _, f := range fakes {
		fmt.Fprintf(&targets, "  - {app: fake, tags: {lie: %s}, comm: %s}\n", f.lie, f.comm)
	}
	rules := `metrics-export-rules:
  fake_native_seconds: {expr: 'fake.cpu', node: ';spin', group_by: [lie]}
  fake_planted_seconds: {expr: 'fake.cpu', node: 'PLANTED', group_by: [lie]}
  fake_sanitized_seconds: {expr: 'fake.cpu', node: 'a\?b\?c\?d\?PLANTED', group_by: [lie]}
  fake_notstr_seconds: {expr: 'fake.cpu', node: 'NOTSTR', group_by: [lie]}
  fake_hugetail_seconds: {expr: 'fake.cpu', node: '\.\.\.A+HUGETAIL', group_by: [lie]}
`
	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte(targets.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644)
	addr := freePort(t)
	ex := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr,
		"--profile.config="+filepath.Join(dir, "targets.yaml"), "--rules.file="+filepath.Join(dir, "rules.yaml"))

	// The attacker's files: one program per version, each in a
	// directory of its own under its real name, run through a link named
	// for the lie.
	var pids []int
	for _, f := range fakes {
		bin := testkit.BuildC(t, f.file, string(src), "-O1", "-rdynamic", "-pthread", "-DPYV="+f.version)
		d := filepath.Join(a.Home, f.lie)
		a.Run(t, "mkdir -p "+d)
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		a.WriteFile(t, filepath.Join(d, f.file), data, 0o755)
		a.Run(t, "ln -s "+f.file+" "+filepath.Join(d, f.comm))
		cmd := a.Start(t, filepath.Join(d, f.comm), f.lie, secretPath)
		pids = append(pids, cmd.Process.Pid)
	}

	counted := func(body, version, result string) float64 {
		return expoValue(body, `probe_exporter_profiler_python_processes_total{result="`+result+`",version="`+version+`"}`)
	}
	var body string
	testkit.Eventually(t, "every fake interpreter counted", func() bool {
		_, body = get(t, "http://"+addr+"/metrics")
		// version: named 3.12, holds 3.11; counted as 3.11.
		return counted(body, "3.11", "mismatch") == 1 && counted(body, "3.12", "mismatch") == 2 &&
			counted(body, "3.13", "mismatch") == 1 && counted(body, "3.9", "unsupported") == 1 &&
			counted(body, "3.12", "named") == 1
	})
	// Samples of every fake, and of the frames' lies (planted 3 s after
	// it started), drained.
	lies := func(metric, lie string) float64 {
		return expoValue(body, metric+`{lie="`+lie+`"}`)
	}
	testkit.Eventually(t, "every fake sampled, the lying frames among them", func() bool {
		_, body = get(t, "http://"+addr+"/exported-metrics")
		for _, f := range fakes {
			if f.lie != "frames" && lies("fake_native_seconds", f.lie) <= 0 {
				return false
			}
		}
		return lies("fake_sanitized_seconds", "frames") > 0 && lies("fake_hugetail_seconds", "frames") > 0
	})
	for _, f := range fakes {
		if f.lie == "frames" {
			continue
		}
		if v := lies("fake_planted_seconds", f.lie); v > 0 {
			t.Errorf("%s: %.2fs of stacks with the planted Python names: its stacks should stay native", f.lie, v)
		}
	}
	if v := lies("fake_notstr_seconds", "frames"); v > 0 {
		t.Errorf("%.2fs of stacks named by an object that is not a str", v)
	}
	_, metrics := get(t, "http://"+addr+"/metrics")
	if n := expoValue(metrics, "probe_exporter_profiler_truncated_stacks_total"); n <= 0 {
		t.Errorf("the cycle in the frame chain was not cut at the frame limit: truncated_stacks_total %v", n)
	}
	if code, m := get(t, "http://"+addr+"/metrics"); code != 200 || !strings.Contains(m, "probe_exporter_profiler_samples_total") {
		t.Errorf("/metrics after the attack: %d", code)
	}
	if strings.Contains(ex.Log(), "panic:") {
		t.Errorf("the exporter panicked:\n%s", tail(ex.Log(), 40))
	}
	hwm := testkit.StatusKiB(t, ex.Pid(), "VmHWM:") >> 10
	if hwm == 0 || hwm >= 512 {
		t.Errorf("VmHWM %d MiB, bound 512 MiB", hwm)
	}
	t.Logf("VmHWM %d MiB; exported:\n%s", hwm, grepLines(body, "fake_"))
	for _, pid := range pids {
		if data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			s := string(data)
			if i := strings.LastIndexByte(s, ')'); i > 0 && (strings.HasPrefix(s[i:], ") T ") || strings.HasPrefix(s[i:], ") t ")) {
				t.Errorf("pid %d left stopped: %s", pid, s)
			}
		}
	}
	if code := ex.stop(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	testkit.NotContains(t, marker, map[string]string{"log": ex.Log(), "/metrics": metrics, "/exported-metrics": body})
}
