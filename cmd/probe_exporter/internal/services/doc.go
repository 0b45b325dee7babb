// Package services holds the daemon's component adapters: each part that
// runs is made a component.Component here, one file per part: the eBPF
// configs (configs.go), the scripts supervisor (scripts served at /NAME),
// the built-in CPU profiler with its targets file, the profile export
// rules with /ingest and /exported-metrics, and the OTLP span exporter.
// Each file holds what its part runs, reloads, serves and shows.
//
// # From a config to what runs
//
// One eBPF config goes through four types, each owned by one package:
//
//   - config.Config is the config as written: a YAML file (and its object
//     or inline code) parsed and validated, nothing loaded.
//   - loader.Object is that config loaded into the kernel: its
//     collection of maps and programs, each program attached or failed.
//   - collector.Config is the loaded object with the metrics read from its
//     maps: what a scrape reads and decodes.
//   - reconcile.Unit is the record the reconciler keeps per config name:
//     the parsed config, the fingerprint of its sources and what runs for
//     it (here a *collector.Config), so a reload keeps unchanged configs
//     running, keeps the old version of one whose new version fails, and
//     closes removed ones. Units are what the landing page, /maps and
//     --config.check show.
//
// Configs.load makes the chain for one config.Config; reconcile calls it.
package services
