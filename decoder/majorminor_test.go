package decoder

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestMajorMinor(t *testing.T) {
	p := filepath.Join(t.TempDir(), "partitions")
	os.WriteFile(p, []byte("major minor  #blocks  name\n\n 259        0  104857600 nvme0n1\n   8       16   10485760 sdb\n"), 0o644)
	env := &Env{Partitions: p}
	// new_encode_dev: minor low byte | major << 8 | (minor & ~0xff) << 12.
	runDecodeCases(t, config.Decoder{Name: "majorminor"}, env, []decodeCase{
		{name: "sdb", in: le32(8<<8 | 16), want: "sdb"},
		{name: "nvme", in: le32(259 << 8), want: "nvme0n1"},
		{name: "unknown", in: le32(7<<8 | 3), want: "unknown:7:3"},
		{name: "u64 field", in: le64(8<<8 | 16), want: "sdb"},
	})
}
