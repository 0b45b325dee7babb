package scripts

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// getppidC makes as many getppid calls as its argument says.
const getppidC = "#include <stdlib.h>\n#include <unistd.h>\n#include <sys/syscall.h>\nint main(int c, char **v) { int n = atoi(v[1]); for (int i = 0; i < n; i++) syscall(SYS_getppid); return 0; }\n"

// workload builds a program named name that makes n getppid calls.
func workload(t *testing.T, name string) string {
	t.Helper()
	return testkit.BuildC(t, name, getppidC, "-O1")
}

func needBpftrace(t *testing.T) {
	testkit.RequireTools(t, "bpftrace")
	testkit.RequireRoot(t)
}

func TestBpftraceSyscalls(t *testing.T) {
	needBpftrace(t)
	name := "btw" + strconv.Itoa(os.Getpid()%100000)
	bin := workload(t, name)
	dir := t.TempDir()
	writeScript(t, dir, "getppid.bt", `// Count getppid calls of one program, by command.
// labels: comm
tracepoint:syscalls:sys_enter_getppid /comm == "`+name+`"/ { @calls[comm] = count(); @last = 42; }
`, false)
	_, srv := serve(t, Options{Dir: dir, StartWait: 20 * time.Second})
	// The first request starts bpftrace; until it has attached it
	// answers 503, then 200 (with no metrics while its maps are empty).
	testkit.Eventually(t, "bpftrace to attach", func() bool {
		code, _, _ := testkit.Get(t, srv.URL+"/getppid.bt")
		return code == http.StatusServiceUnavailable || code == http.StatusOK
	})
	const n = 1234
	for i := 0; i < 2; i++ {
		if out, err := exec.Command(bin, strconv.Itoa(n)).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	want := `calls{comm="` + name + `"} ` + strconv.Itoa(2*n)
	var body string
	testkit.Eventually(t, want, func() bool {
		code, _, b := testkit.Get(t, srv.URL+"/getppid.bt")
		body = b
		return code == http.StatusOK && strings.Contains(b, want)
	})
	for _, w := range []string{"# TYPE calls counter", "# TYPE last gauge", "last 42"} {
		if !strings.Contains(body, w) {
			t.Errorf("missing %q in\n%s", w, body)
		}
	}
}

func TestBpftraceHistogram(t *testing.T) {
	needBpftrace(t)
	name := "bth" + strconv.Itoa(os.Getpid()%100000)
	bin := workload(t, name)
	dir := t.TempDir()
	writeScript(t, dir, "hist.bt", `tracepoint:syscalls:sys_enter_getppid /comm == "`+name+`"/ { @h = hist(5); @l = lhist(3, 0, 10, 2); @s = stats(7); }
`, false)
	_, srv := serve(t, Options{Dir: dir, StartWait: 20 * time.Second})
	testkit.Eventually(t, "bpftrace to attach", func() bool {
		code, _, _ := testkit.Get(t, srv.URL+"/hist.bt")
		return code == http.StatusServiceUnavailable || code == http.StatusOK
	})
	if out, err := exec.Command(bin, "100").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	var body string
	testkit.Eventually(t, "histogram", func() bool {
		code, _, b := testkit.Get(t, srv.URL+"/hist.bt")
		body = b
		return code == http.StatusOK && strings.Contains(b, "h_count 100")
	})
	for _, w := range []string{
		"# TYPE h histogram",
		`h_bucket{le="0"} 0`, `h_bucket{le="1"} 0`, `h_bucket{le="3"} 0`, `h_bucket{le="7"} 100`, `h_bucket{le="+Inf"} 100`,
		"# TYPE l histogram", `l_bucket{le="3"} 100`, `l_bucket{le="+Inf"} 100`,
		"# TYPE s summary", "s_sum 700", "s_count 100",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("missing %q in\n%s", w, body)
		}
	}
}

func TestBpftraceFamilies(t *testing.T) {
	lines := [][]byte{
		[]byte(`{"type": "map", "data": {"@c": 25}}`),
		[]byte(`{"type": "map", "data": {"@m": {"1,x": 25, "2,y": 3}}}`),
		[]byte(`{"type": "hist", "data": {"@h": [{"min": 4, "max": 7, "count": 25}, {"min": 16, "max": 31, "count": 1}]}}`),
		[]byte(`{"type": "stats", "data": {"@a": 5}}`),
		[]byte(`{"type": "stats", "data": {"@s": {"count": 25, "average": 5, "total": 125}}}`),
		[]byte(`{"type": "stats", "data": {"@k": {"bash": {"count": 2, "average": 3, "total": 6}}}}`),
	}
	s := inferBpftrace("// labels: @m id,name\nk:f { @c = count(); @m[1, \"x\"] = count(); }")
	fams, skipped, err := bpftraceFamilies(lines, s)
	if err != nil || len(skipped) != 0 {
		t.Fatal(err, skipped)
	}
	out, err := encodeText(fams)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, w := range []string{
		"# TYPE c counter\nc 25",
		`m{id="1",name="x"} 25`,
		"# TYPE h histogram",
		`h_bucket{le="7"} 25`, `h_bucket{le="15"} 25`, `h_bucket{le="31"} 26`,
		"# TYPE a gauge\na 5",
		"s_sum 125\ns_count 25",
		`k_sum{key="bash"} 6`,
	} {
		if !strings.Contains(text, w) {
			t.Errorf("missing %q in\n%s", w, text)
		}
	}
	if _, _, err := bpftraceFamilies([][]byte{[]byte("{nope")}, s); err == nil {
		t.Error("bad JSON accepted")
	}
	var v any
	_ = json.Unmarshal([]byte("1"), &v)
}

// TestBpftraceNonNumericMaps: maps whose values are strings, tuples or
// stacks (bpftrace 0.17's writeback.bt keeps @reason strings) are left
// out and named; the numeric maps beside them are served, and a map
// printed twice in one dump (a script's own print()) counts once.
func TestBpftraceNonNumericMaps(t *testing.T) {
	lines := [][]byte{
		[]byte(`{"type": "map", "data": {"@reason": {"12": "background", "13": "periodic"}}}`),
		[]byte(`{"type": "map", "data": {"@start": {"12": 5523400000}}}`),
		[]byte(`{"type": "map", "data": {"@t": [1,"b"]}}`),
		[]byte(`{"type": "map", "data": {"@k": {"1": "\n        bpf_prog_x+6407\n        do_syscall_64+113\n"}}}`),
		[]byte(`{"type": "map", "data": {"@sym": "0"}}`),
		[]byte(`{"type": "hist", "data": {"@bad": {"x": 1}}}`),
		[]byte(`{"type": "stats", "data": {"@st": {"a": "b"}}}`),
		[]byte(`{"type": "map", "data": {"@n": 4}}`),
		[]byte(`{"type": "map", "data": {"@n": 5}}`),
	}
	fams, skipped, err := bpftraceFamilies(lines, btScript{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, sk := range skipped {
		left = append(left, sk.name)
	}
	if got, want := strings.Join(left, " "), "@reason @t @k @sym @bad @st"; got != want {
		t.Errorf("left out %q, want %q", got, want)
	}
	out, err := encodeText(fams)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "# HELP n bpftrace map @n\n# TYPE n gauge\nn 5\n# HELP start bpftrace map @start\n# TYPE start gauge\nstart{key=\"12\"} 5.5234e+09\n"; got != want {
		t.Errorf("served\n%s\nwant\n%s", got, want)
	}
	if _, err := validate(out); err != nil {
		t.Error(err)
	}
}
