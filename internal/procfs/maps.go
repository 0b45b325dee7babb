package procfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // "r-xp"
	Offset     uint64 // in the file
	// Major, Minor and Inode identify the file (zero for anonymous
	// memory).
	Major, Minor uint32
	Inode        uint64
	// Path is the file as the process sees it, "" for anonymous memory,
	// or a pseudo-path such as "[vdso]" or "[heap]".
	Path string
	// Deleted says the file was removed (or replaced) since it was
	// mapped; Path is its old name, without the kernel's " (deleted)".
	Deleted bool
}

// Executable reports whether the mapping holds code.
func (m Mapping) Executable() bool { return strings.Contains(m.Perms, "x") }

// IsFile reports whether a file backs the mapping (not anonymous memory or
// a pseudo-path).
func (m Mapping) IsFile() bool { return strings.HasPrefix(m.Path, "/") }

// Dev is the file's device as the kernel encodes it inside (major<<20 |
// minor), as BPF programs see inode->i_sb->s_dev.
func (m Mapping) Dev() uint64 { return uint64(m.Major)<<20 | uint64(m.Minor) }

// ReadMaps reads /proc/PID/maps under procRoot.
func ReadMaps(procRoot string, pid int) ([]Mapping, error) {
	return readMaps(Dir(procRoot, pid))
}

// MapFile is where the file of mapping m of process pid is from the host:
// through /proc/PID/root, or, once the file is deleted, through
// /proc/PID/map_files, which still reaches it.
func MapFile(procRoot string, pid int, m Mapping) string {
	return mapFile(Dir(procRoot, pid), m)
}

// MapFile is where the file of the process's mapping m is from the host.
func (p Process) MapFile(m Mapping) string { return mapFile(p.Dir(), m) }

func mapFile(dir string, m Mapping) string {
	if m.Deleted {
		return filepath.Join(dir, "map_files", fmt.Sprintf("%x-%x", m.Start, m.End))
	}
	return filepath.Join(dir, "root", m.Path)
}

func readMaps(dir string) ([]Mapping, error) {
	f, err := os.OpenFile(filepath.Join(dir, "maps"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	maps, err := ParseMaps(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return maps, nil
}

// ParseMaps parses the lines of a maps file:
//
//	START-END PERMS OFFSET MAJOR:MINOR INODE   [PATH]
//
// The path is the rest of the line after the padding, so names with spaces
// survive. More than MaxMaps bytes is an error.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	lr := &io.LimitedReader{R: r, N: MaxMaps + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		m, err := parseMapping(line)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if lr.N == 0 {
		return nil, fmt.Errorf("more than the %d bytes of mappings read", MaxMaps)
	}
	return out, sc.Err()
}

func parseMapping(line string) (Mapping, error) {
	var fields [5]string
	rest := line
	for i := range fields {
		rest = strings.TrimLeft(rest, " ")
		var ok bool
		fields[i], rest, ok = strings.Cut(rest, " ")
		if !ok && i < len(fields)-1 {
			return Mapping{}, errMalformed("maps line", line)
		}
	}
	var m Mapping
	lo, hi, ok := strings.Cut(fields[0], "-")
	maj, min, ok2 := strings.Cut(fields[3], ":")
	if !ok || !ok2 {
		return Mapping{}, errMalformed("maps line", line)
	}
	var errs [6]error
	var ma, mi uint64
	m.Start, errs[0] = strconv.ParseUint(lo, 16, 64)
	m.End, errs[1] = strconv.ParseUint(hi, 16, 64)
	m.Offset, errs[2] = strconv.ParseUint(fields[2], 16, 64)
	ma, errs[3] = strconv.ParseUint(maj, 16, 32)
	mi, errs[4] = strconv.ParseUint(min, 16, 32)
	m.Inode, errs[5] = strconv.ParseUint(fields[4], 10, 64)
	for _, err := range errs {
		if err != nil {
			return Mapping{}, errMalformed("maps line", line)
		}
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	m.Perms = fields[1]
	m.Path = strings.TrimLeft(rest, " ")
	if m.Inode != 0 {
		if p, ok := strings.CutSuffix(m.Path, " (deleted)"); ok {
			m.Path, m.Deleted = p, true
		}
	}
	return m, nil
}

func errMalformed(what, s string) error {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Errorf("malformed %s %q", what, s)
}
