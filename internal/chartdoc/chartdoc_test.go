package chartdoc

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const schema = `{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "image": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "pullPolicy": {"enum": ["Always", "IfNotPresent"]},
        "tag": {"type": "string"}
      }
    },
    "port": {"$ref": "#/definitions/port"},
    "resources": {"$ref": "#/definitions/resources"},
    "budget": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]},
    "labels": {"type": "object"},
    "args": {"type": "array", "items": {"type": "string"}},
    "monitor": {
      "type": "object",
      "additionalProperties": false,
      "properties": {"enabled": {"type": "boolean"}}
    }
  },
  "definitions": {
    "port": {"title": "port (1–65535)", "type": "integer", "minimum": 1, "maximum": 65535},
    "resources": {"type": "object", "additionalProperties": false, "properties": {"limits": {"type": "object"}}}
  }
}`

const values = `# A header, apart.

# The image.
image:
  # Always or IfNotPresent.
  pullPolicy: IfNotPresent
  # The tag; <empty> means "v" + appVersion.
  tag: ""
# The port | for everything.
port: 9739
# Requests and limits, e.g.
#   limits: {cpu: "1"}
# sized from the benchmarks.
resources:
  limits:
    cpu: "1"
# An integer or a percentage.
budget: 1
# Labels of *every* pod, e.g. {app_name: x}.
labels: {}
# Flags.
args: [--a]
# A monitor.
monitor:
  enabled: false
`

func TestValues(t *testing.T) {
	rows, err := Values([]byte(values), []byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	want := []Value{
		{Key: "image", Type: "object", Description: "The image.", Section: true, Line: 4},
		{Key: "image.pullPolicy", Type: "`Always` or `IfNotPresent`", Default: `"IfNotPresent"`, Description: "Always or IfNotPresent.", Line: 6},
		{Key: "image.tag", Type: "string", Default: `""`, Description: `The tag; <empty> means "v" + appVersion.`, Line: 8},
		{Key: "port", Type: "port (1–65535)", Default: "9739", Description: "The port | for everything.", Line: 10},
		// A $ref'd shape is one value, however many properties it has.
		{Key: "resources", Type: "object", Default: `{"limits":{"cpu":"1"}}`, Description: "Requests and limits, e.g.\n  limits: {cpu: \"1\"}\nsized from the benchmarks.", Line: 14},
		{Key: "budget", Type: "integer (≥ 0) or string", Default: "1", Description: "An integer or a percentage.", Line: 18},
		{Key: "labels", Type: "object", Default: "{}", Description: "Labels of *every* pod, e.g. {app_name: x}.", Line: 20},
		{Key: "args", Type: "list of string", Default: `["--a"]`, Description: "Flags.", Line: 22},
		{Key: "monitor", Type: "object", Description: "A monitor.", Section: true, Line: 24},
		{Key: "monitor.enabled", Type: "boolean", Default: "false", Description: "Turns `monitor` on.", Line: 25},
	}
	if d := cmp.Diff(want, rows); d != "" {
		t.Errorf("rows (-want +got):\n%s", d)
	}

	table := Table(rows)
	for _, line := range []string{
		"| **`image`** | object |  | The image. |",
		"| `image.tag` | string | `\"\"` | The tag; &lt;empty&gt; means \"v\" + appVersion. |",
		"| `port` | port (1–65535) | `9739` | The port \\| for everything. |",
		"| `resources` | object | `{\"limits\":{\"cpu\":\"1\"}}` | Requests and limits, e.g.<br>`limits: {cpu: \"1\"}`<br>sized from the benchmarks. |",
		"| `labels` | object | `{}` | Labels of \\*every\\* pod, e.g. {app\\_name: x}. |",
		"| `monitor.enabled` | boolean | `false` | Turns `monitor` on. |",
	} {
		if !strings.Contains(table, line+"\n") {
			t.Errorf("table lacks\n%s\nin\n%s", line, table)
		}
	}
}

// Every way values.yaml and the schema can drift apart is an error that
// names the key, and all of them are reported at once.
func TestValuesDisagree(t *testing.T) {
	bad := strings.NewReplacer(
		"# The port | for everything.\n", "",
		"  tag: \"\"\n", "  tag: \"\"\n  # Misspelt.\n  tga: x\n",
		"# Flags.\nargs: [--a]\n", "",
		"monitor:\n  enabled: false\n", "monitor: false\n",
	).Replace(values)
	_, err := Values([]byte(bad), []byte(schema))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"values.yaml:10: image.tga is not in values.schema.json",
		"values.yaml:11: port has no comment to document it",
		"values.yaml:23: monitor is an object in values.schema.json",
		"values.schema.json describes args, which values.yaml does not set",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
