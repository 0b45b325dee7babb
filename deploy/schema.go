package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"k8s.io/client-go/openapi"
)

// Validator checks objects against the Kubernetes OpenAPI v3 documents of
// an openapi.Client, strictly: a field the schema does not declare is an
// error, as `kubectl apply --validate=strict` makes it.
type Validator struct {
	compiler *jsonschema.Compiler
	// schemas maps group/version/kind to the resource and the schema's
	// pointer in it.
	schemas map[string]string
	cache   map[string]*jsonschema.Schema
}

// NewValidator loads every group version the client serves.
func NewValidator(client openapi.Client) (*Validator, error) {
	paths, err := client.Paths()
	if err != nil {
		return nil, fmt.Errorf("openapi paths: %w", err)
	}
	v := &Validator{compiler: jsonschema.NewCompiler(), schemas: map[string]string{}, cache: map[string]*jsonschema.Schema{}}
	for path, gv := range paths {
		data, err := gv.Schema("application/json")
		if err != nil {
			return nil, fmt.Errorf("openapi %s: %w", path, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("openapi %s: %w", path, err)
		}
		comps, _ := doc.(map[string]any)["components"].(map[string]any)
		schemas, _ := comps["schemas"].(map[string]any)
		if schemas == nil {
			return nil, fmt.Errorf("openapi %s: no components.schemas", path)
		}
		url := "https://kubernetes.invalid/" + path + ".json"
		for name, s := range schemas {
			sm, ok := s.(map[string]any)
			if !ok {
				continue
			}
			addNewerFields(name, sm)
			strict(sm)
			gvks, _ := sm["x-kubernetes-group-version-kind"].([]any)
			for _, g := range gvks {
				g, _ := g.(map[string]any)
				key := gvk(fmt.Sprint(g["group"]), fmt.Sprint(g["version"]), fmt.Sprint(g["kind"]))
				if _, dup := v.schemas[key]; !dup {
					v.schemas[key] = url + "#/components/schemas/" + strings.ReplaceAll(name, "/", "~1")
				}
			}
		}
		if err := v.compiler.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("openapi %s: %w", path, err)
		}
	}
	return v, nil
}

func gvk(group, version, kind string) string {
	if group == "" || group == "<nil>" {
		return version + "/" + kind
	}
	return group + "/" + version + "/" + kind
}

// addNewerFields adds to the schema named name the fields of the
// Kubernetes API that the manifests use and that the documents client-go
// ships predate (they are test fixtures of Kubernetes 1.2x): the
// appArmorProfile of a container's and a pod's security context, a field
// since Kubernetes 1.30 (k8s.io/api's SecurityContext.AppArmorProfile),
// so that the manifests need not use the annotation it deprecates.
func addNewerFields(name string, schema map[string]any) {
	switch name {
	case "io.k8s.api.core.v1.SecurityContext", "io.k8s.api.core.v1.PodSecurityContext":
	default:
		return
	}
	props, ok := schema["properties"].(map[string]any)
	if !ok {
		return
	}
	if _, ok := props["appArmorProfile"]; !ok {
		props["appArmorProfile"] = map[string]any{
			"type":     "object",
			"required": []any{"type"},
			"properties": map[string]any{
				"type":             map[string]any{"type": "string", "enum": []any{"Localhost", "RuntimeDefault", "Unconfined"}},
				"localhostProfile": map[string]any{"type": "string"},
			},
		}
	}
}

// strict forbids, in every object schema of the tree that lists its
// properties, the properties it does not list (OpenAPI leaves them open;
// the API server drops or refuses them).
func strict(s any) {
	switch s := s.(type) {
	case map[string]any:
		if props, ok := s["properties"].(map[string]any); ok && len(props) > 0 {
			_, open := s["additionalProperties"]
			_, preserve := s["x-kubernetes-preserve-unknown-fields"]
			if !open && !preserve {
				s["additionalProperties"] = false
			}
		}
		for k, v := range s {
			if k == "enum" || k == "default" || k == "example" {
				continue
			}
			strict(v)
		}
	case []any:
		for _, v := range s {
			strict(v)
		}
	}
}

// Kinds lists the group/version/kinds the validator knows.
func (v *Validator) Kinds() []string {
	var out []string
	for k := range v.schemas {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Validate checks one object (JSON) against its kind's schema.
func (v *Validator) Validate(obj []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(obj, &meta); err != nil {
		return err
	}
	if meta.APIVersion == "" || meta.Kind == "" {
		return fmt.Errorf("object without apiVersion or kind")
	}
	group, version, ok := strings.Cut(meta.APIVersion, "/")
	if !ok {
		group, version = "", meta.APIVersion
	}
	key := gvk(group, version, meta.Kind)
	ref, ok := v.schemas[key]
	if !ok {
		return fmt.Errorf("%s: no such kind in the Kubernetes OpenAPI schema", key)
	}
	sch, ok := v.cache[key]
	if !ok {
		var err error
		if sch, err = v.compiler.Compile(ref); err != nil {
			return fmt.Errorf("compiling the schema of %s: %w", key, err)
		}
		v.cache[key] = sch
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(obj))
	if err != nil {
		return err
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}
