package docstest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/collector/web"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// readmeSection returns README.md's text from the heading to the next
// heading of the same or a higher level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q section", heading)
	}
	level := strings.Index(heading, " ")
	rest := s[i+len(heading)+2:]
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} `).FindAllStringIndex(rest, -1) {
		if m[1]-1 <= level {
			return rest[:m[0]]
		}
	}
	return rest
}

// jsonFields returns every JSON field name of t, nested ones included.
func jsonFields(t reflect.Type) []string {
	var out []string
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || t.PkgPath() == "time" {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			out = append(out, name)
			walk(t.Field(i).Type)
		}
	}
	walk(t)
	return out
}

// The JSON shapes of `probe -o json` and `diagnose -o json` are a contract
// for scripts: README.md documents every field, and its example is a
// document of exactly that shape.
func TestReadmeDocumentsTheJSONShapes(t *testing.T) {
	for _, c := range []struct {
		heading string
		typ     any
	}{
		{"### `probe -o json`", &web.ProbeReport{}},
		{"### `diagnose -o json`", &kube.DiagnoseReport{}},
	} {
		sec := readmeSection(t, c.heading)
		for _, f := range jsonFields(reflect.TypeOf(c.typ)) {
			if !regexp.MustCompile("[`{ ,.]" + regexp.QuoteMeta(f) + "[`}, ]").MatchString(sec) {
				t.Errorf("%s: field %q is not documented", c.heading, f)
			}
		}
		m := regexp.MustCompile("(?s)```json\n(.*?)```").FindStringSubmatch(sec)
		if m == nil {
			t.Errorf("%s: no example", c.heading)
			continue
		}
		dec := json.NewDecoder(strings.NewReader(m[1]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c.typ); err != nil {
			t.Errorf("%s: the example is not of the shape: %v", c.heading, err)
			continue
		}
		// Every top-level field is in the example.
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(m[1]), &keys); err != nil {
			t.Fatal(err)
		}
		typ := reflect.TypeOf(c.typ).Elem()
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if _, ok := keys[name]; !ok {
				t.Errorf("%s: the example lacks %q", c.heading, name)
			}
		}
		if v := reflect.ValueOf(c.typ).Elem().FieldByName("Schema"); v.Int() != 1 {
			t.Errorf("%s: the example's schema is %d", c.heading, v.Int())
		}
	}
}
