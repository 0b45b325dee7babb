package procfs

import (
	"os"
	"strings"
	"testing"
)

func TestParseUID(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       uint32
		err        bool
	}{
		{"real uid first", "Name:\tsh\nUid:\t1000\t0\t0\t0\nGid:\t100\n", 1000, false},
		{"root", "Uid:\t0\t0\t0\t0\n", 0, false},
		{"a name that looks like a Uid line", "Name:\tUid: 0\nUid:\t1000\t1000\t1000\t1000\n", 1000, false},
		{"no Uid line", "Name:\tx\n", 0, true},
		{"empty Uid line", "Uid:\n", 0, true},
		{"not a number", "Uid:\tx\n", 0, true},
		{"out of range", "Uid:\t4294967296\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUID([]byte(tc.data))
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("parseUID = %d, %v; want %d, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestUIDSelf(t *testing.T) {
	got, err := UID("/proc", os.Getpid())
	if err != nil || got != uint32(os.Getuid()) {
		t.Errorf("UID(self) = %d, %v; want %d", got, err, os.Getuid())
	}
	if _, err := UID("/proc", -1); err == nil || !strings.Contains(err.Error(), "status") {
		t.Errorf("UID(-1) = %v, want an error naming the file", err)
	}
}

// FuzzParseUID: any status file gives a uid or an error, never a panic,
// and a uid only from a line starting "Uid:".
func FuzzParseUID(f *testing.F) {
	f.Add([]byte("Name:\tsh\nUid:\t1000\t0\t0\t0\n"))
	f.Add([]byte("Name:\tUid: 0\nUid:\t7\n"))
	f.Add([]byte("Uid:"))
	f.Add([]byte("Uid:\t99999999999999999999\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := parseUID(data); err == nil && !strings.HasPrefix(string(data), "Uid:") && !strings.Contains(string(data), "\nUid:") {
			t.Errorf("a uid from %q, which has no Uid line", data)
		}
	})
}
