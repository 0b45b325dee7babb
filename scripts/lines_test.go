package scripts

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // longer than the reader's buffer
	for _, tc := range []struct {
		name, in string
		max      int
		want     []string // "!" marks a line reported too long
	}{
		{"lines", "a\nbb\n\nccc\n", 10, []string{"a", "bb", "", "ccc"}},
		{"unterminated", "a\nbb", 10, []string{"a", "bb"}},
		{"exactly max", "abcd\nx\n", 4, []string{"abcd", "x"}},
		{"one over", "abcde\nx\n", 4, []string{"!abcd", "x"}},
		{"beyond the buffer", "a\n" + long + "\nb\n", 1 << 20, []string{"a", long, "b"}},
		{"beyond the limit", "a\n" + long + "\nb\n", 1000, []string{"a", "!" + long[:1000], "b"}},
		{"beyond the limit unterminated", long, 10, []string{"!" + long[:10]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in))} {
				lr := newLineReader(r, tc.max)
				var got []string
				for {
					line, tooLong, err := lr.next()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					s := string(line)
					if tooLong {
						s = "!" + s
					}
					got = append(got, s)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("got %.100q, want %.100q", got, tc.want)
				}
			}
		})
	}
}
