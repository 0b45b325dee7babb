package decoder

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestComm(t *testing.T) {
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "42"), 0o755)
	os.WriteFile(filepath.Join(proc, "42", "comm"), []byte("gunicorn\n"), 0o644)
	runDecodeCases(t, config.Decoder{Name: "comm"}, &Env{ProcRoot: proc}, []decodeCase{
		{name: "running", in: []byte("42"), want: "gunicorn"},
		{name: "gone", in: []byte("43"), want: "43"},
		{name: "raw bytes", in: []byte{42, 0, 0, 0}, wantErr: "decimal"},
	})
}
