package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// kernel is what one guest reported.
type kernel struct {
	dir      string
	release  string
	features []string
	seconds  string
	finished bool
	runs     []*run
}

// run is one test binary invocation of the guest's test list.
type run struct {
	label string
	exit  int // -1 when the guest wrote no exit code
	tests map[string]*result
}

type result struct {
	name   string
	action string // pass, fail or skip
	output []string
}

// event is a test2json record.
type event struct {
	Action string
	Test   string
	Output string
}

func readKernel(dir string) (*kernel, error) {
	k := &kernel{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, "uname"))
	if err != nil {
		return nil, fmt.Errorf("the guest never started its tests (see console.log next to it): %w", err)
	}
	k.release = strings.TrimSpace(string(b))
	if b, err := os.ReadFile(filepath.Join(dir, "features")); err == nil {
		k.features = strings.Fields(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "seconds")); err == nil {
		k.seconds = strings.TrimSpace(string(b))
	}
	_, err = os.Stat(filepath.Join(dir, "done"))
	k.finished = err == nil
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		r, err := readRun(f)
		if err != nil {
			return nil, err
		}
		k.runs = append(k.runs, r)
	}
	return k, nil
}

func readRun(file string) (*run, error) {
	label := strings.TrimSuffix(filepath.Base(file), ".json")
	r := &run{label: label, exit: -1, tests: map[string]*result{}}
	if b, err := os.ReadFile(strings.TrimSuffix(file, ".json") + ".rc"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			r.exit = n
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var ev event
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if ev.Test == "" {
			continue
		}
		t := r.tests[ev.Test]
		if t == nil {
			t = &result{name: ev.Test}
			r.tests[ev.Test] = t
		}
		switch ev.Action {
		case "output":
			t.output = append(t.output, ev.Output)
		case "pass", "fail", "skip":
			t.action = ev.Action
		}
	}
	return r, nil
}

// leaves are the tests without subtests, by name.
func (r *run) leaves() []*result {
	var out []*result
	for name, t := range r.tests {
		parent := false
		for other := range r.tests {
			if strings.HasPrefix(other, name+"/") {
				parent = true
				break
			}
		}
		if !parent {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// reason is the skip or failure message a test logged.
func (t *result) reason() string {
	var lines []string
	for _, l := range t.output {
		s := strings.TrimSpace(l)
		if s == "" || strings.HasPrefix(s, "=== ") || strings.HasPrefix(s, "--- ") {
			continue
		}
		lines = append(lines, s)
	}
	msg := strings.Join(lines, " | ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

// attachType is the attach type an attach-type test is about: subtests of
// these tests are named by the type, then "_" and the rest (for
// TestAttachTypes, the SEC() name with "/" turned into "_"). The return
// flavours of the multi types count as their entry type.
func attachType(test string) string {
	if test == "TestKernelStap" || strings.HasPrefix(test, "TestKernelStap/") {
		return "stap" // systemtap modules: run.sh built them for this kernel
	}
	for _, parent := range []string{"TestAttachTypes/", "TestAttachErrors/", "TestKernelExamples/"} {
		if sub, ok := strings.CutPrefix(test, parent); ok {
			kind, _, _ := strings.Cut(sub, "_")
			switch kind {
			case "kretprobe.multi":
				return "kprobe.multi"
			case "uretprobe.multi":
				return "uprobe.multi"
			}
			return kind
		}
	}
	return ""
}

// print writes the kernel's summary and reports whether it passed.
func (k *kernel) print(w io.Writer) bool {
	ok := true
	var run, pass, fail, skip int
	var notes []string
	has := map[string]bool{}
	for _, f := range k.features {
		has[f] = true
	}
	for _, r := range k.runs {
		leaves := r.leaves()
		if r.exit != 0 {
			ok = false
			notes = append(notes, fmt.Sprintf("  FAIL %s: test binary exited %d", r.label, r.exit))
		}
		if len(leaves) == 0 {
			ok = false
			notes = append(notes, fmt.Sprintf("  FAIL %s: no test ran", r.label))
		}
		for _, t := range leaves {
			run++
			switch t.action {
			case "pass":
				pass++
			case "skip":
				skip++
				if kind := attachType(t.name); has[kind] {
					ok = false
					notes = append(notes, fmt.Sprintf("  FAIL %s: skipped, but this kernel has %s: %s", t.name, kind, t.reason()))
				} else {
					notes = append(notes, fmt.Sprintf("  skip %s: %s", t.name, t.reason()))
				}
			default:
				fail++
				ok = false
				notes = append(notes, fmt.Sprintf("  FAIL %s: %s", t.name, t.reason()))
			}
		}
	}
	if !k.finished {
		ok = false
		notes = append(notes, "  FAIL the guest did not finish its test list (timeout or crash: see console.log)")
	}
	fmt.Fprintf(w, "kernel %s (guest %ss): attach types %s\n", k.release, k.seconds, strings.Join(k.features, " "))
	fmt.Fprintf(w, "  tests run %d, passed %d, failed %d, skipped %d\n", run, pass, fail, skip)
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return ok
}
