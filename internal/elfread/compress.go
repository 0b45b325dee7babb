package elfread

import (
	"compress/zlib"
	"io"

	"github.com/klauspost/compress/zstd"
)

func zlibReader(r io.Reader) (io.ReadCloser, error) { return zlib.NewReader(r) }

// zstdReader decodes a zstd stream whose output is size bytes; the
// decoder's own window and buffers are capped to that size too.
func zstdReader(r io.Reader, size uint64) (io.ReadCloser, error) {
	d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(max(size, 1<<20)), zstd.WithDecoderMaxWindow(max(size, 1<<20)))
	if err != nil {
		return nil, err
	}
	return d.IOReadCloser(), nil
}
