package collector

// redecodeIfStale decodes every cached key again on its next sight when a
// decoder's outputs may have changed since they were decoded (Kubernetes
// pod names learnt from the API server after the key's cgroup was first
// seen): raw keys are otherwise decoded once. Series no longer produced
// drop out of scrapes and are evicted as usual.
func (mm *mapMetric) redecodeIfStale() {
	if mm.labels == nil {
		return
	}
	g := mm.labels.Generation()
	if g == mm.labelsGen {
		return
	}
	mm.labelsGen = g
	for k := range mm.keySeries {
		mm.keySeries[k] = keyRedecode
	}
	for k := range mm.labelKeySeries {
		mm.labelKeySeries[k] = keyRedecode
	}
}
