package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/openapi/openapitest"
)

// The Kubernetes OpenAPI v3 documents client-go ships (core/v1, apps/v1
// and a few more), read from the module cache: no cluster, no network.
func validator(t *testing.T) *Validator {
	t.Helper()
	v, err := NewValidator(openapitest.NewEmbeddedFileClient())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestManifestsSchema validates every document of every Kubernetes
// manifest: built-in kinds against the OpenAPI schema (strictly: unknown
// fields are errors), the Prometheus Operator's kinds by strict decoding
// into the Operator's own API types.
func TestManifestsSchema(t *testing.T) {
	v := validator(t)
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) < 3 {
		t.Fatalf("manifests: %v", files)
	}
	kinds := map[string]int{}
	for _, f := range files {
		docs, err := Documents(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range docs {
			var meta struct{ APIVersion, Kind string }
			json.Unmarshal(d, &meta)
			kinds[meta.Kind]++
			if err := validate(v, d); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i+1, meta.Kind, err)
			}
		}
	}
	for _, k := range []string{"Namespace", "ConfigMap", "DaemonSet", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "PodMonitor", "ServiceMonitor", "PrometheusRule"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests (%v)", k, kinds)
		}
	}
}

// validate checks one object: monitoring.coreos.com kinds against the
// Operator's types, the rest against the OpenAPI schema.
func validate(v *Validator, obj []byte) error {
	var meta struct{ APIVersion, Kind string }
	if err := json.Unmarshal(obj, &meta); err != nil {
		return err
	}
	// The OpenAPI documents client-go ships have no RBAC group: those
	// kinds are decoded strictly into the API's types instead.
	if !strings.HasPrefix(meta.APIVersion, "monitoring.coreos.com/") && !strings.HasPrefix(meta.APIVersion, "rbac.authorization.k8s.io/") {
		return v.Validate(obj)
	}
	var into any
	switch meta.APIVersion + "/" + meta.Kind {
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		into = &rbacv1.ClusterRole{}
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		into = &rbacv1.ClusterRoleBinding{}
	case "monitoring.coreos.com/v1/PodMonitor":
		into = &monitoringv1.PodMonitor{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		into = &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		into = &monitoringv1.PrometheusRule{}
	default:
		return fmt.Errorf("%s %s: not a kind this test knows", meta.APIVersion, meta.Kind)
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("%s: %w", meta.Kind, err)
	}
	switch m := into.(type) {
	case *monitoringv1.PodMonitor:
		if len(m.Spec.PodMetricsEndpoints) == 0 || m.Spec.Selector.MatchLabels == nil {
			return fmt.Errorf("PodMonitor without endpoints or selector")
		}
	case *monitoringv1.ServiceMonitor:
		if len(m.Spec.Endpoints) == 0 || m.Spec.Selector.MatchLabels == nil {
			return fmt.Errorf("ServiceMonitor without endpoints or selector")
		}
	case *rbacv1.ClusterRole:
		for i, r := range m.Rules {
			if len(r.Verbs) == 0 {
				return fmt.Errorf("ClusterRole: rules[%d]: verbs: Required value", i)
			}
		}
	case *rbacv1.ClusterRoleBinding:
		if m.RoleRef.Kind == "" || m.RoleRef.Name == "" || m.RoleRef.APIGroup != rbacv1.GroupName {
			return fmt.Errorf("ClusterRoleBinding: roleRef: needs kind, name and apiGroup %s", rbacv1.GroupName)
		}
	}
	return nil
}

// TestSchemaRejects shows the validator refuses what the API server
// refuses: each broken manifest fails, naming the place.
func TestSchemaRejects(t *testing.T) {
	v := validator(t)
	const ds = `{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"x"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{%s"containers":[%s]}}}}`
	const ok = `{"name":"c","image":"i","ports":[{"containerPort":9900}]}`
	for _, tc := range []struct {
		name, obj, want string
	}{
		{"valid", fmt.Sprintf(ds, "", ok), ""},
		{"misspelled field", fmt.Sprintf(ds, `"hostPid":true,`, ok), "hostPid"},
		{"wrong type", fmt.Sprintf(ds, "", `{"name":"c","image":"i","ports":[{"containerPort":"9900"}]}`), "containerPort"},
		{"missing required", fmt.Sprintf(ds, "", `{"image":"i"}`), "name"},
		{"AppArmor profile (newer than the documents)", fmt.Sprintf(ds, "", `{"name":"c","image":"i","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}`), ""},
		{"AppArmor profile typo", fmt.Sprintf(ds, "", `{"name":"c","image":"i","securityContext":{"appArmorProfile":{"type":"Unconfined","profile":"x"}}}`), "profile"},
		{"AppArmor profile unknown type", fmt.Sprintf(ds, `"securityContext":{"appArmorProfile":{"type":"unconfined"}},`, ok), "appArmorProfile"},
		{"unknown capability field", fmt.Sprintf(ds, "", `{"name":"c","image":"i","securityContext":{"capabilities":{"added":["BPF"]}}}`), "added"},
		{"rbac typo", `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"x"},"rules":[{"apiGroups":[""],"resource":["pods"],"verbs":["get"]}]}`, `unknown field "resource"`},
		{"rbac no verbs", `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"x"},"rules":[{"apiGroups":[""],"resources":["pods"]}]}`, "verbs: Required value"},
		{"unknown kind", `{"apiVersion":"apps/v1","kind":"DaemonSets","metadata":{"name":"x"}}`, "no such kind"},
		{"podmonitor typo", `{"apiVersion":"monitoring.coreos.com/v1","kind":"PodMonitor","metadata":{"name":"x"},"spec":{"selector":{"matchLabels":{"a":"b"}},"podMetricEndpoints":[{"port":"metrics"}]}}`, "podMetricEndpoints"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(v, []byte(tc.obj))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid object refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error does not name %q: %v", tc.want, err)
			}
		})
	}
}

// TestPromtool checks the Prometheus files with promtool (Debian's
// prometheus package): the rules, the PrometheusRule's rules (which must be
// the same), the static scrape config, and the Kubernetes one with its
// service discovery swapped for a static target, since Debian's promtool
// is built without Kubernetes discovery; relabelling and the rest are
// checked.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool (Debian's prometheus package) is not installed")
	}
	check := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	check("check", "rules", "prometheus/probe_exporter.rules.yml")
	check("check", "config", "prometheus/prometheus-static.yml")

	dir := t.TempDir()
	docs, err := Documents("kubernetes/prometheusrule.yaml")
	if err != nil || len(docs) != 1 {
		t.Fatalf("prometheusrule.yaml: %v (%d documents)", err, len(docs))
	}
	var rule struct{ Spec json.RawMessage }
	json.Unmarshal(docs[0], &rule)
	os.WriteFile(filepath.Join(dir, "operator.rules.yml"), rule.Spec, 0o644) // JSON is YAML
	check("check", "rules", filepath.Join(dir, "operator.rules.yml"))
	file, err := Documents("prometheus/probe_exporter.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	json.Unmarshal(rule.Spec, &a)
	json.Unmarshal(file[0], &b)
	if !reflect.DeepEqual(a, b) {
		t.Error("kubernetes/prometheusrule.yaml's groups differ from prometheus/probe_exporter.rules.yml")
	}

	cfg, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	sd := regexp.MustCompile(`(?m)^    kubernetes_sd_configs:\n(      .*\n)+`)
	if !sd.Match(cfg) {
		t.Fatal("prometheus.yml has no kubernetes_sd_configs block")
	}
	swapped := sd.ReplaceAll(cfg, []byte("    static_configs:\n      - targets: [\"node:9900\"]\n"))
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), swapped, 0o644)
	os.WriteFile(filepath.Join(dir, "probe_exporter.rules.yml"), mustRead(t, "prometheus/probe_exporter.rules.yml"), 0o644)
	check("check", "config", filepath.Join(dir, "prometheus.yml"))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
