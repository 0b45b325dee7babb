package procfs

import (
	"errors"
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
	uids, err := parseUIDs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return uids, nil
}

// UID is the real user id of process pid (the first field of the Uid line
// of /proc/PID/status): the user who started it, also when it runs a
// set-user-id program.
func UID(procRoot string, pid int) (uint32, error) {
	uids, err := UIDs(procRoot, pid)
	if err != nil {
		return 0, err
	}
	return uids[0], nil
}

// parseUID reads the real uid from the Uid line of a status file.
func parseUID(data []byte) (uint32, error) {
	uids, err := parseUIDs(data)
	if err != nil {
		return 0, err
	}
	return uids[0], nil
}

// parseUIDs reads the uids of the Uid line of a status file, at least
// one. The Name line before it holds the process's own name, which it
// chooses: only a line starting "Uid:" counts.
func parseUIDs(data []byte) ([]uint32, error) {
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		var uids []uint32
		for _, f := range strings.Fields(v) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return nil, errMalformed("Uid line", line)
			}
			uids = append(uids, uint32(n))
		}
		if len(uids) == 0 {
			break
		}
		return uids, nil
	}
	return nil, errors.New("no Uid line")
}
