package collector

import (
	"log/slog"

	dto "github.com/prometheus/client_model/go"
)

// gatherer reads the maps of the configs served into frames, once per
// scrape: the frames are written out by Handler or turned into metric
// families by Gather.
type gatherer struct {
	configs *registry
	logger  *slog.Logger
}

// Gather reads every config's maps into metric families, with their
// series sorted as a prometheus.Registry sorts them.
func (g *gatherer) Gather() ([]*dto.MetricFamily, error) {
	var mfs []*dto.MetricFamily
	for _, f := range g.frames() {
		mfs = append(mfs, f.toDTO())
		f.release()
	}
	return mfs, nil
}

// frames scrapes the maps of every config that serves metrics.
func (g *gatherer) frames() []*frame {
	var frames []*frame
	for _, cfg := range g.configs.list() {
		if !cfg.serving() {
			continue
		}
		frames = cfg.scrape(frames, g.logger)
	}
	return frames
}
