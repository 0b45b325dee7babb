// Package cgroupfs finds the cgroup v2 hierarchy and follows cgroups as
// they come and go.
package cgroupfs

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// DefaultMount is where cgroup2 is usually mounted on a unified host.
const DefaultMount = "/sys/fs/cgroup"

// Mount returns the mount point of the cgroup2 hierarchy as mountinfo
// (usually /proc/self/mountinfo) lists it: /sys/fs/cgroup on a unified host,
// /sys/fs/cgroup/unified on a hybrid one.
func Mount(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("finding the cgroup2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return unescape(fields[4]), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading %s: %w", mountinfo, err)
	}
	return "", fmt.Errorf("no cgroup2 mount in %s", mountinfo)
}

// unescape undoes mountinfo's octal escapes ("\040" for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
