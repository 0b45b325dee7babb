package testkit

import _ "embed"

// ExportRules is a rules file (testdata/export-rules.yaml): the rules of
// Pyroscope's export-rules documentation, a_simple_app_total,
// a_simple_app_slow_env_prod and a_simple_app_slow_env.
//
//go:embed testdata/export-rules.yaml
var ExportRules string
