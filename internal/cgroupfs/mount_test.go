package cgroupfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMount(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, want, wantErr string
	}{
		{
			name: "unified",
			mountinfo: "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n" +
				"30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:9 - cgroup2 cgroup2 rw,nsdelegate\n",
			want: "/sys/fs/cgroup",
		},
		{
			name: "hybrid",
			mountinfo: "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n" +
				"31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n" +
				"40 30 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
			want: "/sys/fs/cgroup/unified",
		},
		{
			name:      "escaped path",
			mountinfo: `40 30 0:35 / /mnt/cg\040two rw shared:1 master:2 - cgroup2 none rw` + "\n",
			want:      "/mnt/cg two",
		},
		{
			name:      "none",
			mountinfo: "31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
			wantErr:   "no cgroup2 mount",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mountinfo")
			if err := os.WriteFile(p, []byte(tc.mountinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Mount(p)
			if tc.wantErr != "" {
				if err == nil || !contains(err.Error(), tc.wantErr) {
					t.Fatalf("Mount = %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Mount = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := Mount("/proc/self/mountinfo"); err != nil {
		t.Logf("this host: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
