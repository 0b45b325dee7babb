package bcc

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

var fieldRE = regexp.MustCompile(`field:([^;]+);\s*offset:(\d+);\s*size:(\d+);`)

// tracepointStruct generates the argument struct bcc gives
// TRACEPOINT_PROBE(cat, ev) as args, from the tracepoint's format file in
// tracefs, with the kernel's field offsets.
func tracepointStruct(tracefs, cat, ev string) (string, error) {
	path := filepath.Join(tracefs, "events", cat, ev, "format")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("the kernel has no tracepoint %s:%s (%w)", cat, ev, err)
	}
	return tracepointStructFrom(cat, ev, string(data))
}

func tracepointStructFrom(cat, ev, format string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "struct tracepoint__%s__%s {\n", cat, ev)
	cur, pad := 0, 0
	for _, m := range fieldRE.FindAllStringSubmatch(format, -1) {
		decl := strings.TrimSpace(m[1])
		off, _ := strconv.Atoi(m[2])
		size, _ := strconv.Atoi(m[3])
		align := size
		switch {
		case strings.HasPrefix(decl, "__data_loc"):
			name := decl[strings.LastIndexAny(decl, " ]")+1:]
			decl = "int data_loc_" + name
			align = 4
		case strings.HasSuffix(decl, "]"):
			open := strings.LastIndex(decl, "[")
			n, err := strconv.Atoi(decl[open+1 : len(decl)-1])
			if err != nil || n == 0 {
				align = 1
			} else {
				align = size / n
			}
		case strings.Contains(decl, "*"):
			align = 8
		}
		if align != 1 && align != 2 && align != 4 && align != 8 {
			align = 1
		}
		if natural := (cur + align - 1) / align * align; natural < off {
			fmt.Fprintf(&b, "\tchar __pad%d[%d];\n", pad, off-cur)
			pad++
		} else if natural > off {
			return "", fmt.Errorf("tracepoint %s:%s: field %q at offset %d is not naturally aligned", cat, ev, decl, off)
		}
		fmt.Fprintf(&b, "\t%s;\n", decl)
		cur = off + size
	}
	if cur == 0 {
		return "", fmt.Errorf("tracepoint %s:%s: its format lists no fields", cat, ev)
	}
	b.WriteString("};\n")
	return b.String(), nil
}
