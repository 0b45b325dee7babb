package testkit

import (
	"bytes"
	"strings"
	"sync"
)

// Tail is the last n lines of s, for failure messages.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogBuffer collects what a process writes (as its Stdout and Stderr) for
// the test to read while it runs. It keeps the last few MiB: enough to
// read, bounded for soak tests.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 4<<20 {
		rest := append([]byte(nil), b.buf.Bytes()[b.buf.Len()-2<<20:]...)
		b.buf.Reset()
		b.buf.Write(rest)
	}
	return b.buf.Write(p)
}

// String is what was written, less what the bound dropped.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
