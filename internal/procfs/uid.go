package procfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// UID is the real user id of process pid (the first field of the Uid line
// of /proc/PID/status): the user who started it, also when it runs a
// set-user-id program.
func UID(procRoot string, pid int) (uint32, error) {
	path := filepath.Join(Dir(procRoot, pid), "status")
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	uid, err := parseUID(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return uid, nil
}

// parseUID reads the real uid from the Uid line of a status file. The
// Name line before it holds the process's own name, which it chooses:
// only a line starting "Uid:" counts.
func parseUID(data []byte) (uint32, error) {
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			uid, err := strconv.ParseUint(f[0], 10, 32)
			if err != nil {
				return 0, fmt.Errorf("Uid %q: %w", f[0], err)
			}
			return uint32(uid), nil
		}
	}
	return 0, errors.New("no Uid line")
}
