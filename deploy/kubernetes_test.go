package deploy

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestDaemonSetPodNames: the DaemonSet runs with a service account bound
// to a ClusterRole that may get, list and watch pods, nothing more; its
// token is mounted and NODE_NAME is the node's name, which is what the
// kubernetes decoder needs to name the pods of its node. The Operator's
// scrape configs drop the exporter pod's own namespace, pod and container
// target labels, which would rename the decoder's.
func TestDaemonSetPodNames(t *testing.T) {
	const file = "kubernetes/daemonset.yaml"
	ds, err := DaemonSet(file)
	if err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName == "" || spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
		t.Fatalf("service account %q, automount %v", spec.ServiceAccountName, spec.AutomountServiceAccountToken)
	}
	node := false
	for _, e := range spec.Containers[0].Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			node = true
		}
	}
	if !node {
		t.Error("no NODE_NAME from spec.nodeName")
	}

	docs, err := Documents(file)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]rbacv1.ClusterRole{}
	var bindings []rbacv1.ClusterRoleBinding
	sa := false
	for _, d := range docs {
		var meta struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
		}
		_ = json.Unmarshal(d, &meta)
		strict := func(into any) {
			dec := json.NewDecoder(bytes.NewReader(d))
			dec.DisallowUnknownFields()
			if err := dec.Decode(into); err != nil {
				t.Fatalf("%s: %v", meta.Kind, err)
			}
		}
		switch meta.Kind {
		case "ServiceAccount":
			sa = sa || (meta.Metadata.Name == spec.ServiceAccountName && meta.Metadata.Namespace == ds.Namespace)
		case "ClusterRole":
			var r rbacv1.ClusterRole
			strict(&r)
			roles[r.Name] = r
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			strict(&b)
			bindings = append(bindings, b)
		}
	}
	if !sa {
		t.Fatalf("no ServiceAccount %s/%s", ds.Namespace, spec.ServiceAccountName)
	}
	var granted []rbacv1.PolicyRule
	for _, b := range bindings {
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == spec.ServiceAccountName && s.Namespace == ds.Namespace && b.RoleRef.Kind == "ClusterRole" {
				granted = append(granted, roles[b.RoleRef.Name].Rules...)
			}
		}
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}}
	if len(granted) != 1 || !slices.Equal(granted[0].APIGroups, want[0].APIGroups) || !slices.Equal(granted[0].Resources, want[0].Resources) ||
		!slices.Equal(granted[0].Verbs, want[0].Verbs) || len(granted[0].ResourceNames)+len(granted[0].NonResourceURLs) != 0 {
		t.Errorf("the service account is granted %+v, want exactly %+v", granted, want)
	}

	for _, f := range []string{"kubernetes/podmonitor.yaml", "kubernetes/servicemonitor.yaml"} {
		docs, err := Documents(f)
		if err != nil {
			t.Fatal(err)
		}
		var relabel []monitoringv1.RelabelConfig
		var pm monitoringv1.PodMonitor
		var sm monitoringv1.ServiceMonitor
		if json.Unmarshal(docs[0], &pm) == nil && len(pm.Spec.PodMetricsEndpoints) > 0 {
			relabel = pm.Spec.PodMetricsEndpoints[0].RelabelConfigs
		} else if json.Unmarshal(docs[0], &sm) == nil && len(sm.Spec.Endpoints) > 0 {
			relabel = sm.Spec.Endpoints[0].RelabelConfigs
		}
		dropped := false
		for _, r := range relabel {
			dropped = dropped || (r.Action == "labeldrop" && r.Regex == "(namespace|pod|container)")
		}
		if !dropped {
			t.Errorf("%s: the target's namespace, pod and container labels are kept: %+v", f, relabel)
		}
	}
}

// TestDaemonSetUnconfined: the DaemonSet asks for no seccomp and no
// AppArmor profile (the runtime's defaults refuse bpf() and reading host
// processes' /proc files), as the container the security-context test
// runs has none, and its namespace admits such a pod under Pod Security;
// ContainerOf refuses a manifest that leaves either profile to the
// runtime, so that the test cannot prove what a node would refuse.
func TestDaemonSetUnconfined(t *testing.T) {
	const file = "kubernetes/daemonset.yaml"
	for _, tc := range []struct {
		name    string
		edit    func(*corev1.PodSpec)
		refused string
	}{
		{name: "as shipped"},
		{name: "no AppArmor profile", edit: func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.AppArmorProfile = nil }, refused: "appArmorProfile"},
		{name: "runtime default AppArmor profile", edit: func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
		}, refused: "appArmorProfile"},
		{name: "AppArmor unconfined for the pod", edit: func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{AppArmorProfile: s.Containers[0].SecurityContext.AppArmorProfile}
			s.Containers[0].SecurityContext.AppArmorProfile = nil
		}},
		{name: "no seccomp profile", edit: func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.SeccompProfile = nil }, refused: "seccompProfile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := DaemonSet(file)
			if err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(&ds.Spec.Template.Spec)
			}
			_, err = ContainerOf(ds)
			switch {
			case tc.refused == "" && err != nil:
				t.Fatal(err)
			case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
				t.Fatalf("got %v, want it refused for %s", err, tc.refused)
			}
		})
	}

	docs, err := Documents(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		var ns corev1.Namespace
		if json.Unmarshal(d, &ns) != nil || ns.Kind != "Namespace" {
			continue
		}
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
			t.Errorf("namespace %s: pod-security.kubernetes.io/enforce=%q, want privileged (baseline refuses hostPID, hostPath and added capabilities)", ns.Name, got)
		}
		return
	}
	t.Errorf("%s has no Namespace", file)
}
