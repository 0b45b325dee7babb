package scripts

import (
	"bufio"
	"errors"
	"io"
)

// lineReader reads newline-terminated lines of at most max bytes without
// ever holding more: a longer line is skipped to its end and reported as
// too long with its first max bytes, so that one huge line neither stops
// the reader nor grows memory.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line without its newline; the slice is valid
// until the next call. At the end of input it returns io.EOF (a last
// unterminated line is returned first).
func (l *lineReader) next() (line []byte, tooLong bool, err error) {
	l.buf = l.buf[:0]
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(l.buf)+len(chunk) > l.max+1 { // +1: the newline
				tooLong = true
				if n := l.max - len(l.buf); n > 0 {
					l.buf = append(l.buf, chunk[:n]...)
				}
				l.buf = l.buf[:min(len(l.buf), l.max)]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			if len(l.buf) > 0 || tooLong {
				return l.buf, tooLong, nil
			}
			return nil, false, err
		}
		if !tooLong {
			l.buf = l.buf[:len(l.buf)-1]
		}
		return l.buf, tooLong, nil
	}
}
