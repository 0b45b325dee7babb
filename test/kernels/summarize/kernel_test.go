package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAttachType(t *testing.T) {
	for test, want := range map[string]string{
		"TestAttachTypes/kprobe_do_nanosleep":              "kprobe",
		"TestAttachTypes/kretprobe.multi_do_nanosle?p":     "kprobe.multi",
		"TestAttachTypes/uretprobe.multi_libc.so.6:getpp*": "uprobe.multi",
		"TestAttachTypes/tp_btf_sched_process_exec":        "tp",
		"TestAttachErrors/fexit":                           "fexit",
		"TestKernelExamples/fentry_vfs-fentry":             "fentry",
		"TestKernelStap":                                   "stap",
		"TestKernelStap/stap_keepalive":                    "stap",
		"TestOther/kprobe":                                 "",
		"TestAttachTypes":                                  "",
	} {
		if got := attachType(test); got != want {
			t.Errorf("attachType(%q) = %q, want %q", test, got, want)
		}
	}
}

// TestSummary reads a guest's results: a skipped test of an attach type
// the kernel has fails the kernel, one it lacks is listed with its reason.
func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features string
		done     bool
		rc       string
		wantOK   bool
		want     []string
	}{
		{name: "lacking", features: "kprobe", done: true, rc: "0", wantOK: true,
			want: []string{"tests run 2, passed 1, failed 0, skipped 1", "skip TestAttachTypes/lsm_file_open: attach_test.go:74: no lsm"}},
		{name: "has it", features: "kprobe lsm", done: true, rc: "0",
			want: []string{"FAIL TestAttachTypes/lsm_file_open: skipped, but this kernel has lsm"}},
		{name: "unfinished", features: "kprobe", rc: "0",
			want: []string{"FAIL the guest did not finish"}},
		{name: "binary failed", features: "kprobe", done: true, rc: "2",
			want: []string{"FAIL loader: test binary exited 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{
				"uname":       "6.1.0-test-amd64\n",
				"features":    tc.features + "\n",
				"loader.rc":   tc.rc + "\n",
				"loader.json": guestJSON,
			}
			if tc.done {
				files["done"] = "ok\n"
			}
			for name, body := range files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			k, err := readKernel(dir)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			if ok := k.print(&out); ok != tc.wantOK {
				t.Errorf("ok = %v, want %v:\n%s", ok, tc.wantOK, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

const guestJSON = `{"Action":"run","Test":"TestAttachTypes"}
{"Action":"run","Test":"TestAttachTypes/kprobe_do_nanosleep"}
{"Action":"output","Test":"TestAttachTypes/kprobe_do_nanosleep","Output":"=== RUN   TestAttachTypes/kprobe_do_nanosleep\n"}
{"Action":"pass","Test":"TestAttachTypes/kprobe_do_nanosleep"}
{"Action":"run","Test":"TestAttachTypes/lsm_file_open"}
{"Action":"output","Test":"TestAttachTypes/lsm_file_open","Output":"    attach_test.go:74: no lsm\n"}
{"Action":"output","Test":"TestAttachTypes/lsm_file_open","Output":"--- SKIP: TestAttachTypes/lsm_file_open (0.01s)\n"}
{"Action":"skip","Test":"TestAttachTypes/lsm_file_open"}
{"Action":"pass","Test":"TestAttachTypes"}
`
