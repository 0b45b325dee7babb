package usdt

import "testing"

// FuzzParseArgs: argument specs from any note never panic, and what parses
// encodes.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"-4@%eax", "8@-16(%rbp) -4@$5", "8@[sp, 16] -4@x0", "-4@112(%rsp)", "4@(%rdi)", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, arch := range []string{"amd64", "arm64"} {
			args, err := ParseArgs(s, arch)
			if err != nil {
				continue
			}
			if _, err := EncodeSpec(args, 0); err != nil {
				t.Fatalf("%q parsed but does not encode: %v", s, err)
			}
		}
	})
}
