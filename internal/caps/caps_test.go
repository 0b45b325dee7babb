package caps

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"CAP_BPF,CAP_PERFMON", []string{"CAP_PERFMON", "CAP_BPF"}, false},
		{"bpf, sys_ptrace", []string{"CAP_SYS_PTRACE", "CAP_BPF"}, false},
		{"", nil, false},
		{"CAP_NOPE", nil, true},
	} {
		mask, err := Parse(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("Parse(%q) error %v", tc.in, err)
			continue
		}
		if got := Names(mask); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
