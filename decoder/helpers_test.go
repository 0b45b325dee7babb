package decoder

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// decodeCase is one input of a decoder table test: want is the output, or
// wantErr a substring of the error (ErrSkipLabelSet is matched with Is).
type decodeCase struct {
	name    string
	in      []byte
	want    string
	wantErr string
}

func runDecodeCases(t *testing.T, conf config.Decoder, env *Env, cases []decodeCase) {
	t.Helper()
	d, err := New(conf, env)
	if err != nil {
		t.Fatalf("New(%+v): %v", conf, err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := d.Decode(tc.in)
			if tc.wantErr != "" {
				if tc.wantErr == "skip" {
					if !errors.Is(err, ErrSkipLabelSet) {
						t.Fatalf("error %v, want ErrSkipLabelSet", err)
					}
					return
				}
				if err == nil || !contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func le16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// symbols is a fixed kernel symbol table for ksym and kstack.
func symbols(t *testing.T) *symtab.Kallsyms {
	t.Helper()
	tab, err := symtab.ParseKallsyms(stringsReader("ffffffff81000000 T _stext\nffffffff81000100 t do_one\nffffffff81000200 T do_two\nffffffff81000300 d some_data\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}
