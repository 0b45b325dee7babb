// Package reconcile owns which configs run: it reads their sources, loads
// each one, keeps unchanged ones running across reloads, keeps the old
// version of a config whose new version fails, retries failed ones, and
// closes removed ones. It hands out one Unit per config, the single source
// of truth for the collector, the landing page, --config.check and /maps.
package reconcile

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/probe-exporter/probe_exporter/config"
)

// Running is what loading a config gives: something that serves until
// closed.
type Running interface {
	// Up reports whether it loaded and attached as a whole; a config that
	// is not up is tried again at the next reload.
	Up() bool
	Close() error
}

// Unit is one config and what runs for it.
type Unit[R Running] struct {
	Name string
	// Config is the config as parsed; for a parse failure only Name and
	// Path are set.
	Config config.Config
	// Fingerprint identifies the sources Running was loaded from.
	Fingerprint string
	// Running is what was loaded: serving, or a failed attempt kept for
	// its state; the zero value for a config that does not parse.
	Running R
	// Err is why the latest attempt failed (parse or load), even when an
	// older version keeps Running.
	Err error
	// Stale is set when Running is an older version kept after the new
	// one failed.
	Stale bool
}

// Serving reports whether the unit runs a version that is up.
func (u Unit[R]) Serving() bool {
	var zero R
	return any(u.Running) != any(zero) && u.Running.Up()
}

// Options configure an Engine.
type Options[R Running] struct {
	// Sources reads the configs; errors of configs that do not parse are
	// *config.FileError where the config's name is known.
	Sources func() ([]config.Config, []error)
	// Fingerprint identifies a config's sources (YAML, object, code).
	Fingerprint func(config.Config) string
	// Load loads and attaches one config. A result that is not Up is
	// closed; its error (or errs) say why.
	Load func(config.Config) (R, []error)
	// Changed is called after every reload with the units (sorted by
	// name).
	Changed func([]Unit[R])
	Logger  *slog.Logger
}

// Reload is how the last reload went.
type Reload struct {
	At  time.Time
	Err error
}

// Engine runs configs.
type Engine[R Running] struct {
	opts Options[R]

	mu    sync.Mutex
	units map[string]Unit[R]
	last  Reload
}

// New makes an engine; nothing runs until Reload.
func New[R Running](opts Options[R]) *Engine[R] {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Engine[R]{opts: opts, units: map[string]Unit[R]{}}
}

// Reload reads the sources again: unchanged configs that serve keep
// running (their counters continue); changed ones are loaded and swapped
// in; a config whose new version fails keeps its old version running, if
// it had one that served; a failed config is tried again even when
// unchanged, since its failure may have come from the host; configs no
// longer named are closed. It returns every error of this reload.
func (e *Engine[R]) Reload() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	cfgs, parseErrs := e.opts.Sources()
	var errs []error
	next := map[string]Unit[R]{}
	for _, err := range parseErrs {
		errs = append(errs, err)
		var fe *config.FileError
		if !errors.As(err, &fe) {
			continue
		}
		// The file no longer parses: its old version (if any) keeps
		// running, marked stale.
		u := Unit[R]{Name: fe.Name, Config: config.Config{Name: fe.Name, Path: fe.Path}, Err: err}
		if old, ok := e.units[fe.Name]; ok && old.Serving() {
			u.Config, u.Fingerprint, u.Running, u.Stale = old.Config, old.Fingerprint, old.Running, true
		}
		next[fe.Name] = u
	}
	for _, c := range cfgs {
		fp := e.opts.Fingerprint(c)
		old, had := e.units[c.Name]
		if had && old.Fingerprint == fp && old.Serving() && !old.Stale && old.Err == nil {
			next[c.Name] = old
			continue
		}
		r, loadErrs := e.opts.Load(c)
		u := Unit[R]{Name: c.Name, Config: c, Fingerprint: fp, Running: r}
		if !u.Serving() {
			u.Err = errors.Join(loadErrs...)
			if u.Err == nil {
				u.Err = fmt.Errorf("config %q: nothing attached", c.Name)
			}
			errs = append(errs, u.Err)
			if had && old.Serving() {
				// Keep the version that works.
				e.close(c.Name, r)
				u.Running, u.Fingerprint, u.Config, u.Stale = old.Running, old.Fingerprint, old.Config, true
			}
			// Otherwise the failed attempt stays, not serving, so its
			// state (which programs failed, and why) can be shown; it is
			// closed when it is tried again.
		}
		next[c.Name] = u
	}
	for name, old := range e.units {
		if n, ok := next[name]; ok && any(n.Running) == any(old.Running) {
			continue
		}
		e.close(name, old.Running)
	}
	e.units = next
	err := errors.Join(errs...)
	e.last = Reload{At: time.Now(), Err: err}
	if e.opts.Changed != nil {
		e.opts.Changed(e.sorted())
	}
	return err
}

func (e *Engine[R]) close(name string, r R) {
	var zero R
	if any(r) == any(zero) {
		return
	}
	if err := r.Close(); err != nil {
		e.opts.Logger.Warn("closing config", "config", name, "err", err)
	}
}

// Units lists the units, sorted by name.
func (e *Engine[R]) Units() []Unit[R] {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sorted()
}

func (e *Engine[R]) sorted() []Unit[R] {
	out := make([]Unit[R], 0, len(e.units))
	for _, u := range e.units {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LastReload says how the last reload went.
func (e *Engine[R]) LastReload() Reload {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// Close closes every unit.
func (e *Engine[R]) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, u := range e.units {
		e.close(name, u.Running)
	}
	e.units = map[string]Unit[R]{}
	if e.opts.Changed != nil {
		e.opts.Changed(nil)
	}
}
