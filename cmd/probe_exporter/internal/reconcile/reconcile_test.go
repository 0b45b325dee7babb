package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

// fake is a loaded config: version is the source it was loaded from.
type fake struct {
	name, version string
	up, closed    bool
}

func (f *fake) Up() bool     { return f.up }
func (f *fake) Close() error { f.closed = true; return nil }

// world is the sources and the host: files by name (content "bad" does
// not parse, "fail" does not load), and whether loads fail for the host's
// reasons.
type world struct {
	files    map[string]string
	hostDown bool
	loads    int
	loaded   []*fake
}

func (w *world) engine() *Engine[*fake] {
	return New(Options[*fake]{
		Sources: func() ([]config.Config, []error) {
			var cfgs []config.Config
			var errs []error
			for name, content := range w.files {
				if content == "bad" {
					errs = append(errs, &config.FileError{Name: name, Path: name + ".yaml", Line: 1, Err: errors.New("unknown field")})
					continue
				}
				cfgs = append(cfgs, config.Config{Name: name, Code: content})
			}
			return cfgs, errs
		},
		Fingerprint: func(c config.Config) string { return c.Code },
		Load: func(c config.Config) (*fake, []error) {
			w.loads++
			f := &fake{name: c.Name, version: c.Code, up: c.Code != "fail" && !w.hostDown}
			w.loaded = append(w.loaded, f)
			if !f.up {
				return f, []error{fmt.Errorf("config %q: attach failed", c.Name)}
			}
			return f, nil
		},
	})
}

func describe(units []Unit[*fake]) string {
	var parts []string
	for _, u := range units {
		s := u.Name + "="
		if u.Serving() {
			s += u.Running.version
		} else {
			s += "-"
		}
		if u.Stale {
			s += "(stale)"
		}
		if u.Err != nil {
			s += "!"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestReload(t *testing.T) {
	w := &world{files: map[string]string{"a": "v1", "b": "v1"}}
	e := w.engine()
	steps := []struct {
		name   string
		change func()
		want   string
		loads  int // loads done by this step
		err    bool
	}{
		{"start", func() {}, "a=v1 b=v1", 2, false},
		{"unchanged keeps running", func() {}, "a=v1 b=v1", 0, false},
		{"changed is swapped", func() { w.files["a"] = "v2" }, "a=v2 b=v1", 1, false},
		{"a new version that fails keeps the old one", func() { w.files["b"] = "fail" }, "a=v2 b=v1(stale)!", 1, true},
		{"and is retried while it fails", func() {}, "a=v2 b=v1(stale)!", 1, true},
		{"fixed: swapped", func() { w.files["b"] = "v3" }, "a=v2 b=v3", 1, false},
		{"unparseable keeps the old one", func() { w.files["a"] = "bad" }, "a=v2(stale)! b=v3", 0, true},
		{"parses again with the same content as before: reloaded", func() { w.files["a"] = "v2" }, "a=v2 b=v3", 1, false},
		{"removed is closed", func() { delete(w.files, "b") }, "a=v2", 0, false},
		{"new config failing from the host", func() { w.files["c"] = "v1"; w.hostDown = true }, "a=v2 c=-!", 1, true},
		{"unchanged failed config retried: the host healed", func() { w.hostDown = false }, "a=v2 c=v1", 1, false},
	}
	for _, s := range steps {
		s.change()
		before := w.loads
		err := e.Reload()
		if got := describe(e.Units()); got != s.want {
			t.Errorf("%s: %s, want %s", s.name, got, s.want)
		}
		if n := w.loads - before; n != s.loads {
			t.Errorf("%s: %d loads, want %d", s.name, n, s.loads)
		}
		if (err != nil) != s.err {
			t.Errorf("%s: error %v", s.name, err)
		}
		if last := e.LastReload(); (last.Err != nil) != s.err || last.At.IsZero() {
			t.Errorf("%s: last reload %+v", s.name, last)
		}
	}
	// Everything not held now was closed; what the units hold is open.
	running := map[*fake]bool{}
	for _, u := range e.Units() {
		if u.Running != nil {
			running[u.Running] = true
		}
	}
	for _, f := range w.loaded {
		if f.closed == running[f] {
			t.Errorf("%s %s: closed %v, running %v", f.name, f.version, f.closed, running[f])
		}
	}
	e.Close()
	for _, f := range w.loaded {
		if !f.closed {
			t.Errorf("%s %s not closed by Close", f.name, f.version)
		}
	}
	if len(e.Units()) != 0 {
		t.Errorf("units after Close: %v", describe(e.Units()))
	}
}

func TestChanged(t *testing.T) {
	w := &world{files: map[string]string{"b": "v1", "a": "v1"}}
	var seen []string
	e := w.engine()
	e.opts.Changed = func(units []Unit[*fake]) { seen = append(seen, describe(units)) }
	e.Reload()
	e.Close()
	if fmt.Sprint(seen) != "[a=v1 b=v1 ]" {
		t.Errorf("changes %q", seen)
	}
}
