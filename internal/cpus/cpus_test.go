package cpus

import (
	"reflect"
	"testing"
)

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"0", []int{0}, false},
		{"0-1", []int{0, 1}, false},
		{"0-2,4,6-7", []int{0, 1, 2, 4, 6, 7}, false},
		{"", nil, false},
		{"3-1", nil, true},
		{"x", nil, true},
	} {
		got, err := ParseList(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseList(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseList(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestOnline(t *testing.T) {
	cpus, err := Online()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) == 0 {
		t.Fatal("no online CPUs")
	}
}
