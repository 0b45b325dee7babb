package privdir

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// An entry of a content-keyed cache is a file with a record beside it,
// PATH.sum, written after it: the key the file was made for (the full
// digest of what it was made from; the file's name holds a prefix only)
// and the SHA-256 of its content. Both are written by WriteFile and read
// by Open, so an entry read back was written by root or the effective
// user into a private directory; the record then rejects what such a
// writer can still leave wrong: a file of another key under a colliding
// name prefix, one without a record (left by an older version or copied
// in by hand), or one altered or cut after it was recorded.

// ErrBadEntry is what a rejected entry's error wraps.
var ErrBadEntry = errors.New("cache entry rejected")

const maxRecord = 4 << 10

func record(key string, sum []byte) []byte {
	return []byte("key " + key + "\nsha256 " + hex.EncodeToString(sum) + "\n")
}

// WriteEntry writes data to path, then its record.
func WriteEntry(path, key string, data []byte) error {
	if err := WriteFile(path, data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	return WriteFile(path+".sum", record(key, sum[:]))
}

// ReadEntry reads the entry at path, of at most max bytes, if its record
// holds key and its content's digest. A missing file or record is an
// error matching fs.ErrNotExist (a miss); anything else wrong, one
// matching ErrBadEntry or ErrNotPrivate.
func ReadEntry(path, key string, max int64) ([]byte, error) {
	want, err := readRecord(path)
	if err != nil {
		return nil, err
	}
	data, err := ReadFile(path, max)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if err := match(path, want, key, sum[:]); err != nil {
		return nil, err
	}
	return data, nil
}

// VerifyEntry checks the entry at path as ReadEntry does, without keeping
// its content: for files handed to other programs by path, in a private
// directory where they cannot change after.
func VerifyEntry(path, key string) error {
	want, err := readRecord(path)
	if err != nil {
		return err
	}
	f, err := Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return match(path, want, key, h.Sum(nil))
}

// PublishEntry moves the file at tmp, made in a private directory on the
// same file system, to path and records it.
func PublishEntry(tmp, path, key string) error {
	f, err := Open(tmp)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return WriteFile(path+".sum", record(key, h.Sum(nil)))
}

func readRecord(path string) (string, error) {
	b, err := ReadFile(path+".sum", maxRecord)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func match(path, rec, key string, sum []byte) error {
	var gotKey, gotSum string
	for _, l := range strings.Split(rec, "\n") {
		if v, ok := strings.CutPrefix(l, "key "); ok {
			gotKey = v
		} else if v, ok := strings.CutPrefix(l, "sha256 "); ok {
			gotSum = v
		}
	}
	switch {
	case gotKey != key:
		return fmt.Errorf("%s: %w: made for key %q, not %q", path, ErrBadEntry, gotKey, key)
	case gotSum != hex.EncodeToString(sum):
		return fmt.Errorf("%s: %w: its content is not what was recorded", path, ErrBadEntry)
	}
	return nil
}
