package web

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/collector/config"
)

// /config shows the running configuration and none of its secrets: the
// hostile environment's configuration (credentials bound to a real
// registry), plus a module of every other kind of secret, a password file
// and a docker config whose contents must not be read, through the real
// config loader.
func TestConfigPageShowsNoSecret(t *testing.T) {
	e := startHostileEnv(t, "")
	dir := t.TempDir()
	const filePW, dockerPW = "file-secret-pw-9b2e", "docker-secret-pw-41aa"
	pwFile := filepath.Join(dir, "password")
	dockerCfg := filepath.Join(dir, "config.json")
	dockerAuth := base64.StdEncoding.EncodeToString([]byte("carol:" + dockerPW))
	for path, content := range map[string]string{
		pwFile:    filePW + "\n",
		dockerCfg: fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, e.victim.Addr, dockerAuth),
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	other, err := config.Parse(filepath.Join(dir, "other.yml"), []byte(fmt.Sprintf(`
modules:
  from-file:
    auth: {username: bob, password_file: password, registries: [%[1]q]}
  from-docker:
    auth: {docker_config: config.json}
`, e.victim.Addr)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	if err := cfg.Merge(other); err != nil {
		t.Fatal(err)
	}

	code, ctype, body := get(t, NewConfigPage(func() *config.Config { return cfg }), "/config")
	if code != 200 || ctype != "text/plain; charset=utf-8" {
		t.Fatalf("/config: %d %s\n%s", code, ctype, body)
	}
	for _, secret := range []string{e.pw, base64.StdEncoding.EncodeToString([]byte("alice:" + e.pw)),
		filePW, base64.StdEncoding.EncodeToString([]byte("bob:" + filePW)), dockerPW, dockerAuth, strings.TrimRight(dockerAuth, "=")} {
		if strings.Contains(body, secret) {
			t.Errorf("/config shows a secret (%.10s…):\n%s", secret, body)
		}
	}
	for _, want := range []string{
		"# The running configuration of imagepull_exporter",
		"    private:\n", "            username: alice\n            password: <secret>\n",
		"            password_file: " + pwFile + "\n", "            docker_config: " + dockerCfg + "\n",
		"    - name: victim\n      image: " + e.victim.Addr + "/team/app:v1\n      module: private\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/config lacks %q:\n%s", want, body)
		}
	}
}
