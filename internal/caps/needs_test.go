package caps

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNewPlan(t *testing.T) {
	held := Mask(BPF, Perfmon, SysAdmin, SysPtrace, DacReadSearch, Syslog)
	progs := Need{Feature: "BPF programs", Caps: Mask(BPF, Perfmon, SysResource)}
	bt := Need{Feature: "bpftrace scripts", Caps: Mask(BPF, Perfmon, SysAdmin)}
	for _, tc := range []struct {
		keep      string
		needs     []Need
		want      uint64
		unmet     []string
		dropsNone bool
		err       string
	}{
		{keep: "auto", needs: []Need{progs}, want: Mask(BPF, Perfmon)},
		{keep: "", needs: []Need{progs, bt}, want: Mask(BPF, Perfmon, SysAdmin)},
		{keep: "all", needs: []Need{progs}, want: held, dropsNone: true},
		{keep: "CAP_BPF,perfmon", needs: []Need{progs, bt}, want: Mask(BPF, Perfmon), unmet: []string{"bpftrace scripts"}},
		// Not held is not kept, whatever the list says.
		{keep: "CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN", needs: []Need{progs}, want: Mask(BPF, Perfmon)},
		{keep: "CAP_NOPE", err: `unknown capability "CAP_NOPE"`},
	} {
		p, err := NewPlan(tc.keep, held, tc.needs)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.keep, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.keep, err)
		}
		if p.Keep != tc.want || p.DropNothing != tc.dropsNone {
			t.Errorf("%q: keep %v (drop nothing %v), want %v", tc.keep, Names(p.Keep), p.DropNothing, Names(tc.want))
		}
		var unmet []string
		for _, u := range p.Unmet {
			unmet = append(unmet, u.Feature)
		}
		if fmt.Sprint(unmet) != fmt.Sprint(tc.unmet) {
			t.Errorf("%q: unmet %v, want %v", tc.keep, unmet, tc.unmet)
		}
	}
}

func TestExplain(t *testing.T) {
	base := fmt.Errorf("opening perf event: %w", unix.EACCES)
	if Effective(SysAdmin) {
		if got := Explain(base, SysAdmin, "uprobes"); got != base {
			t.Errorf("with the capability the error is unchanged: %v", got)
		}
	} else if got := Explain(base, SysAdmin, "uprobes"); !errors.Is(got, unix.EACCES) || !strings.Contains(got.Error(), "uprobes needs CAP_SYS_ADMIN") {
		t.Errorf("explained: %v", got)
	}
	other := errors.New("no such file")
	if got := Explain(other, SysAdmin, "uprobes"); got != other {
		t.Errorf("other errors unchanged: %v", got)
	}
}
