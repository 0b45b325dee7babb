package procfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// UIDs are the real, effective, saved and filesystem uids of process pid
// (the Uid line of /proc/PID/status): whom the files it creates belong to.
func UIDs(procRoot string, pid int) ([]uint32, error) {
	path := filepath.Join(Dir(procRoot, pid), "status")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		var uids []uint32
		for _, f := range strings.Fields(v) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, errMalformed("Uid line", line))
			}
			uids = append(uids, uint32(n))
		}
		if len(uids) == 0 {
			break
		}
		return uids, nil
	}
	return nil, fmt.Errorf("%s: no Uid line", path)
}
