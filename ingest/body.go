package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
)

// gunzip decompresses r, failing once more than MaxDecompressedBytes come
// out: the count is kept while decompressing, never after.
func (h *Handler) gunzip(r io.Reader) (io.Reader, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, classify(fmt.Errorf("gzip: %w", err))
	}
	zr.Multistream(true)
	return &capReader{r: zr, left: h.opts.MaxDecompressedBytes, max: h.opts.MaxDecompressedBytes}, nil
}

// sniffGzip decompresses a body that starts with the gzip magic bytes.
func (h *Handler) sniffGzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 4096)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, classify(err)
	}
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		return h.gunzip(br)
	}
	return br, nil
}

// capReader fails with a 413 once more than max bytes were read.
type capReader struct {
	r         io.Reader
	left, max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One more byte tells a body of exactly max from a bigger one.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body over %d bytes (--ingest.max-decompressed-bytes)", c.max)}
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// classify turns read errors into answers: the wire bound, the body
// deadline, gzip corruption.
func classify(err error) error {
	var he *httpError
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &mbe):
		return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes (--ingest.max-bytes)", mbe.Limit)}
	case errors.As(err, &ne) && ne.Timeout():
		return &httpError{http.StatusRequestTimeout, "body not received within --ingest.body-timeout"}
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("gzip: %v", err)
	}
	return badRequest("reading body: %v", err)
}
