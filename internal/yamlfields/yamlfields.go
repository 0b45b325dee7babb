// Package yamlfields refuses the keys of a YAML mapping that the Go
// struct it decodes into has no field for, naming each at its own line of
// the file and listing the fields there are. yaml.v3's strict decoder
// names a Go type instead, and a line of whatever bytes it decoded (a
// node decoded on its own is re-encoded first, so its lines are not the
// file's).
package yamlfields

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is an unknown key.
type Error struct {
	// Line is the key's line in the file.
	Line int
	Key  string
	// Want lists the keys there are, in the struct's order.
	Want []string
}

func (e *Error) Error() string {
	return fmt.Sprintf("unknown field %q (want %s)", e.Key, strings.Join(e.Want, ", "))
}

// Check returns an *Error for the first key of a mapping in n that the
// type of v (a struct, or a pointer to one) has no yaml field for. Nested
// structs, pointers to them, lists of them and inlined structs are
// checked the same way; maps and scalars are not.
func Check(n *yaml.Node, v any) error {
	return check(n, reflect.TypeOf(v))
}

func check(n *yaml.Node, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	switch {
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for _, e := range n.Content {
			if err := check(e, t.Elem()); err != nil {
				return err
			}
		}
		return nil
	case t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode:
		return nil
	}
	fields := map[string]reflect.Type{}
	var names []string
	addFields(t, fields, &names)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		ft, ok := fields[k.Value]
		if !ok {
			return &Error{Line: k.Line, Key: k.Value, Want: names}
		}
		if err := check(n.Content[i+1], ft); err != nil {
			return err
		}
	}
	return nil
}

// addFields adds the yaml fields of struct t, those of its inlined
// structs in their place.
func addFields(t reflect.Type, fields map[string]reflect.Type, names *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
		case name == "" && opts == "inline" && f.Type.Kind() == reflect.Struct:
			addFields(f.Type, fields, names)
		case name == "":
			// Untagged: yaml.v3 uses the field's name in lower case.
			if f.IsExported() {
				name = strings.ToLower(f.Name)
				fields[name] = f.Type
				*names = append(*names, name)
			}
		default:
			fields[name] = f.Type
			*names = append(*names, name)
		}
	}
}
