package collector

import "sync"

// registry is the set of configs being served. The engine replaces it
// whole on every change; readers get a copy of the list.
type registry struct {
	mu      sync.RWMutex
	configs []*Config
}

// set replaces the configs.
func (r *registry) set(cfgs []*Config) {
	r.mu.Lock()
	r.configs = cfgs
	r.mu.Unlock()
}

// list returns the configs.
func (r *registry) list() []*Config {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]*Config(nil), r.configs...)
}
