// Package services makes each part that runs beside the configs a
// component.Component: the scripts supervisor (scripts served at /NAME),
// the built-in CPU profiler with its targets file, the profile export
// rules with /ingest and /exported-metrics, and the OTLP span exporter.
// Each file holds one part: what it runs, reloads, serves and shows.
package services
