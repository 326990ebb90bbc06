// Package chartdoc documents a Helm chart's values from the chart itself:
// the descriptions are the comments above each key of values.yaml, the
// types come from values.schema.json. It renders the chart's README
// (internal/cmd/chartdoc, run by scripts/deploy.sh generate) and is what
// keeps values.yaml and the schema in step: Values fails when a key of
// values.yaml has no schema, when the schema describes a key values.yaml
// does not set, or when a key has no comment.
//
// The schema says how deep the documentation goes. A key whose schema is an
// inline object with "properties" is a shape of the chart's own: it gets a
// row, then one row per key inside it. A key whose schema is a "$ref" to a
// definition (Kubernetes' resources, label selectors, label maps...) or a
// free-form object is one value: one row, its whole default. A definition's
// "title" names its type in the table.
//
// A key named "enabled" needs no comment: it turns its parent on, which the
// parent's comment describes.
//
// helm-docs would do the table, but it infers types from defaults ({} is an
// "object", "" a "string"), cannot tell the chart's shapes from Kubernetes'
// and wants its own "# --" comment convention and a tools module of its
// own; this builds from the Go module the repository already has.
package chartdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// Value is one row of the values table.
type Value struct {
	// Key is the dotted path, e.g. "nodeProbe.credentialProviders.binDir".
	Key string
	// Type is the schema's type in words: "boolean", "port (1–65535)",
	// "integer or string", "`Always`, `IfNotPresent` or `Never`".
	Type string
	// Default is the default as compact JSON; empty for a section.
	Default string
	// Description is the comment above the key, without the "# ".
	Description string
	// Section is true for a shape of the chart's own whose keys follow.
	Section bool
	// Line is the key's line in values.yaml.
	Line int
}

// Values walks values.yaml along values.schema.json and returns a row per
// documented value, in values.yaml's order. The error lists every key
// that is missing from one of the two or has no comment.
func Values(valuesYAML, schemaJSON []byte) ([]Value, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(valuesYAML, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: not a mapping")
	}
	var schema map[string]any
	if err := json.Unmarshal(schemaJSON, &schema); err != nil {
		return nil, fmt.Errorf("values.schema.json: %w", err)
	}
	w := walker{defs: asMap(schema["definitions"])}
	w.mapping("", doc.Content[0], schema)
	return w.rows, errors.Join(w.errs...)
}

type walker struct {
	defs map[string]any
	rows []Value
	errs []error
}

func (w *walker) errorf(format string, args ...any) {
	w.errs = append(w.errs, fmt.Errorf(format, args...))
}

// mapping documents the keys of node, a mapping whose schema has inline
// properties.
func (w *walker) mapping(prefix string, node *yaml.Node, schema map[string]any) {
	props := asMap(schema["properties"])
	seen := map[string]bool{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		key := prefix + k.Value
		seen[k.Value] = true
		s, ok := props[k.Value].(map[string]any)
		if !ok {
			w.errorf("values.yaml:%d: %s is not in values.schema.json", k.Line, key)
			continue
		}
		desc := comment(k.HeadComment)
		if desc == "" && k.Value == "enabled" && prefix != "" {
			desc = "Turns `" + strings.TrimSuffix(prefix, ".") + "` on."
		}
		if desc == "" {
			w.errorf("values.yaml:%d: %s has no comment to document it", k.Line, key)
		}
		row := Value{Key: key, Type: w.typeOf(s), Description: desc, Line: k.Line}
		if _, inline := s["properties"]; inline && s["$ref"] == nil {
			if v.Kind != yaml.MappingNode {
				w.errorf("values.yaml:%d: %s is an object in values.schema.json", k.Line, key)
				continue
			}
			row.Section = true
			w.rows = append(w.rows, row)
			w.mapping(key+".", v, s)
			continue
		}
		var val any
		if err := v.Decode(&val); err != nil {
			w.errorf("values.yaml:%d: %s: %v", k.Line, key, err)
			continue
		}
		b, err := json.Marshal(val)
		if err != nil {
			w.errorf("values.yaml:%d: %s: %v", k.Line, key, err)
			continue
		}
		row.Default = string(b)
		w.rows = append(w.rows, row)
	}
	var missing []string
	for name := range props {
		if !seen[name] {
			missing = append(missing, prefix+name)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		w.errorf("values.schema.json describes %s, which values.yaml does not set", m)
	}
}

// typeOf names a schema's type: a definition by its title, an enum by its
// values, a type (or several) by name.
func (w *walker) typeOf(s map[string]any) string {
	if ref, ok := s["$ref"].(string); ok {
		def := asMap(w.defs[strings.TrimPrefix(ref, "#/definitions/")])
		if def == nil {
			return "?"
		}
		if title, ok := def["title"].(string); ok {
			return title
		}
		return w.typeOf(def)
	}
	if title, ok := s["title"].(string); ok {
		return title
	}
	if enum, ok := s["enum"].([]any); ok {
		var vs []string
		for _, v := range enum {
			b, _ := json.Marshal(v)
			vs = append(vs, "`"+strings.Trim(string(b), `"`)+"`")
		}
		return orList(vs)
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := s[k].([]any); ok {
			var ts []string
			for _, a := range alts {
				if t := w.typeOf(asMap(a)); t != "" && !contains(ts, t) {
					ts = append(ts, t)
				}
			}
			return orList(ts)
		}
	}
	if c, ok := s["const"]; ok {
		b, _ := json.Marshal(c)
		return "`" + string(b) + "`"
	}
	var types []string
	switch t := s["type"].(type) {
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			types = append(types, fmt.Sprint(x))
		}
	}
	if len(types) == 1 && types[0] == "array" {
		if items := asMap(s["items"]); items != nil {
			if it := w.typeOf(items); it != "" && it != "object" {
				return "list of " + it
			}
		}
		return "list"
	}
	if len(types) == 1 && types[0] == "integer" {
		lo, hasLo := s["minimum"].(float64)
		hi, hasHi := s["maximum"].(float64)
		switch {
		case hasLo && hasHi:
			return fmt.Sprintf("integer (%g–%g)", lo, hi)
		case hasLo:
			return fmt.Sprintf("integer (≥ %g)", lo)
		}
	}
	return orList(types)
}

func orList(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// comment turns a YAML head comment into text: "# " stripped from each
// line. A blank comment line separates paragraphs; lines indented past the
// "# " (examples) keep their indentation.
func comment(head string) string {
	if head == "" {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(head, "\n") {
		l = strings.TrimPrefix(l, "#")
		l = strings.TrimPrefix(l, " ")
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// Table renders the rows as a Markdown table. In a cell, prose lines join
// into one paragraph, and example lines (indented in the comment) become
// code on lines of their own.
func Table(rows []Value) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	for _, r := range rows {
		def := ""
		if !r.Section {
			def = code(r.Default)
		}
		key := code(r.Key)
		if r.Section {
			key = "**" + key + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", key, cell(r.Type), def, cell(r.Description))
	}
	return b.String()
}

// cell renders text for a table cell.
func cell(text string) string {
	var parts []string
	var para []string
	flush := func() {
		if len(para) > 0 {
			parts = append(parts, inline(strings.Join(para, " ")))
			para = nil
		}
	}
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "  "):
			flush()
			parts = append(parts, code(strings.TrimSpace(l)))
		case l == "":
			flush()
		default:
			para = append(para, l)
		}
	}
	flush()
	return strings.Join(parts, "<br>")
}

// inline escapes prose for a table cell, leaving `code spans` as they are
// but for the table's pipes: outside them, < and > would start HTML and
// * and _ emphasis.
func inline(s string) string {
	var b strings.Builder
	inCode := false
	for _, r := range s {
		switch {
		case r == '`':
			inCode = !inCode
			b.WriteRune(r)
		case r == '|':
			b.WriteString(`\|`)
		case inCode:
			b.WriteRune(r)
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '*' || r == '_':
			b.WriteRune('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// code is s as a code span in a table cell.
func code(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, "|", `\|`)
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// Render returns the chart's README: README.md.gotmpl of chartDir executed
// with .Values, the values table, and .Chart, Chart.yaml's fields.
func Render(chartDir string) ([]byte, error) {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(chartDir, name)) }
	values, err := read("values.yaml")
	if err != nil {
		return nil, err
	}
	schema, err := read("values.schema.json")
	if err != nil {
		return nil, err
	}
	tmplText, err := read("README.md.gotmpl")
	if err != nil {
		return nil, err
	}
	chartYAML, err := read("Chart.yaml")
	if err != nil {
		return nil, err
	}
	var chart map[string]any
	if err := yaml.Unmarshal(chartYAML, &chart); err != nil {
		return nil, fmt.Errorf("parse Chart.yaml: %w", err)
	}
	rows, err := Values(values, schema)
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New("README.md.gotmpl").Option("missingkey=error").Parse(string(tmplText))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, map[string]any{"Values": Table(rows), "Chart": chart}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
