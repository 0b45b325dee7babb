package testkit

import (
	"os"
	"strings"
	"testing"
)

func TestAttackerIsUnprivileged(t *testing.T) {
	a := NewAttacker(t)
	if out := a.Run(t, "id -u"); strings.TrimSpace(out) == "0" {
		t.Fatalf("attacker runs as root: %s", out)
	}
	secret, marker := Secret(t)
	out, err := a.Command("cat", secret).CombinedOutput()
	if err == nil || strings.Contains(string(out), marker) {
		t.Fatalf("the attacker read the secret: %s", out)
	}
	a.WriteFile(t, a.Home+"/f", []byte("x"), 0o644)
	if fi, err := os.Stat(a.Home + "/f"); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("stat: %v %v", fi, err)
	}
}
