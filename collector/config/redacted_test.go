package config

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/probe"
)

// /config shows the running configuration with every secret as <secret>,
// and never what the files it names hold.
func TestRedacted(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, secret := range []string{"hunter2", "YWxpY2U6aHVudGVyMg", "aHVudGVyMi"} {
		if strings.Contains(out, secret) {
			t.Errorf("Redacted shows %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"    inline:\n", "            username: bob\n", "            password: <secret>\n",
		"            registries:\n                - '*.example.com'\n                - ghcr.io\n",
		"            password_file: testdata/password.txt\n", "            docker_config: testdata/docker-config.json\n",
		"            ca_file: testdata/ca.pem\n", "        interval: 2m0s\n", "      image: registry.example.com/team/app:v1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Redacted lacks %q:\n%s", want, out)
		}
	}
	// It is the configuration: it parses back (with the secret replaced).
	var back Config
	if err := yaml.Unmarshal(b, &back); err != nil {
		t.Fatalf("Redacted does not parse back: %v", err)
	}
	if back.Modules["inline"].Auth.Password != "<secret>" || back.Modules["private"].Interval != cfg.Modules["private"].Interval ||
		len(back.Targets) != len(cfg.Targets) {
		t.Errorf("parsed back: %+v", back)
	}
}

// Every secret of the schema is a probe.Secret, or at least under a key
// the second line of Redacted recognises: a key added with a plain string
// type and a secret's name still shows <secret>.
func TestRedactedKnowsEverySecretKey(t *testing.T) {
	var walk func(reflect.Type, string)
	seen := map[reflect.Type]bool{}
	walk = func(typ reflect.Type, where string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := yamlKey(f)
			if key == "" || key == "-" {
				continue
			}
			if f.Type == reflect.TypeFor[probe.Secret]() && !secretKey(key) {
				t.Errorf("%s.%s is a probe.Secret under key %q, which secretKey does not recognise", where, f.Name, key)
			}
			walk(f.Type, where+"."+key)
		}
	}
	walk(reflect.TypeFor[Config](), "config")
	if len(seen) < 5 {
		t.Fatalf("walked %d types; the walk is broken", len(seen))
	}

	doc := `
password: p1
provider:
  client_secret: p2
  token: p3
  tokens: [p4, p5]
  api_key: p6
  auth: p7
  password_file: /run/secret/pw
  token_url: https://auth.example.com/token
  username: alice
  empty_password: ""
auth:
  username: bob
`
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	redactNode(&n)
	b, err := yaml.Marshal(&n)
	if err != nil {
		t.Fatal(err)
	}
	want := `password: <secret>
provider:
    client_secret: <secret>
    token: <secret>
    tokens: [<secret>, <secret>]
    api_key: <secret>
    auth: <secret>
    password_file: /run/secret/pw
    token_url: https://auth.example.com/token
    username: alice
    empty_password: ""
auth:
    username: bob
`
	if string(b) != want {
		t.Errorf("redactNode:\n%s\nwant:\n%s", b, want)
	}
}
