package privdir

import (
	"crypto/sha256"
	"strings"
	"testing"
)

// FuzzRecord: a cache entry's record, whatever its bytes, never panics
// the check, and passes only when it holds the key and the digest asked
// for.
func FuzzRecord(f *testing.F) {
	sum := sha256.Sum256([]byte("object"))
	f.Add(string(record("k1", sum[:])), "k1", "object")
	f.Add(string(record("k1", sum[:])), "k2", "object")
	f.Add(string(record("k1", sum[:])), "k1", "altered")
	f.Add("", "", "")
	f.Add("key \nsha256 \n", "", "")
	f.Add("key k1\nkey k2\nsha256 00\n", "k2", "x")
	f.Add(strings.Repeat("key ", 1000), "key ", "")
	f.Add("\x00\xff\nsha256", "k", "\x00")
	f.Fuzz(func(t *testing.T, rec, key, content string) {
		sum := sha256.Sum256([]byte(content))
		if err := match("p", rec, key, sum[:]); err == nil {
			if !strings.Contains(rec, "key "+key) || !strings.Contains(rec, "sha256 ") {
				t.Fatalf("record %q passed for key %q", rec, key)
			}
		}
	})
}
