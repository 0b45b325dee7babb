package ingest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/probe-exporter/probe_exporter/rules"
)

// Memory charged per distinct stack beyond its bytes (map entry, sample).
const stackOverhead = 96

// decodeStacks reads "f1;f2;f3 COUNT" lines (split at the last space), or
// with lines one stack per line counting once. It streams: only distinct
// stacks are kept, each charged to the lease.
func decodeStacks(r io.Reader, l *lease, lines bool) ([]rules.Sample, error) {
	counts := map[string]uint64{}
	var total uint64
	sc := bufio.NewScanner(r)
	const firstBuf = 64 << 10
	sc.Buffer(make([]byte, 0, firstBuf), maxStackBytes)
	charged := int64(firstBuf) // the scanner's buffer, which doubles for long lines
	if err := l.take(charged); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		// A line cut short by a read error reports the read error.
		if err := sc.Err(); err != nil {
			return err
		}
		return badRequest(format, args...)
	}
	for n := 1; sc.Scan(); n++ {
		if n > maxLines {
			return nil, tooMuch("more than %d lines", maxLines)
		}
		if need := 3 * int64(len(sc.Bytes())); need > charged {
			if err := l.take(need - charged); err != nil {
				return nil, err
			}
			charged = need
		}
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		stack, v := line, uint64(1)
		if !lines {
			i := bytes.LastIndexByte(line, ' ')
			if i <= 0 {
				return nil, bad("line %d: want \"stack count\"", n)
			}
			var err error
			if v, err = parseCount(string(line[i+1:])); err != nil {
				return nil, bad("line %d: %v", n, err)
			}
			stack = line[:i]
		}
		if frames := bytes.Count(stack, []byte{';'}) + 1; frames > maxFrames {
			return nil, tooMuch("line %d: a stack of more than %d frames", n, maxFrames)
		}
		old, seen := counts[string(stack)]
		if !seen {
			if len(counts) >= maxStacks {
				return nil, tooMuch("more than %d distinct stacks", maxStacks)
			}
			if err := l.take(int64(len(stack)) + stackOverhead); err != nil {
				return nil, err
			}
		}
		if old > math.MaxUint64-v || total > math.MaxUint64-v {
			return nil, badRequest("line %d: values add up to more than 2^64-1", n)
		}
		counts[string(stack)] = old + v
		total += v
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, tooMuch("a line of more than %d bytes", maxStackBytes)
		}
		return nil, err
	}
	out := make([]rules.Sample, 0, len(counts))
	for s, v := range counts {
		out = append(out, rules.Sample{Stack: s, Value: v})
	}
	return out, nil
}

// parseCount reads a sample count: a non-negative integer below 2^64.
func parseCount(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err == nil {
		return v, nil
	}
	if f, ferr := strconv.ParseFloat(s, 64); ferr == nil || errors.Is(ferr, strconv.ErrRange) {
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0):
			return 0, fmt.Errorf("count %q is not finite", s)
		case f < 0:
			return 0, fmt.Errorf("count %q is negative", s)
		}
	}
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("count %q overflows 64 bits", s)
	}
	return 0, fmt.Errorf("count %q is not a non-negative integer", s)
}
