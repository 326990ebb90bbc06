package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/probe"
)

// Redacted returns the configuration as YAML with every secret shown as
// "<secret>", for /config (blackbox_exporter's /config does the same).
// Passwords are probe.Secret, which marshals so. As a second line, any
// scalar under a key that names a secret (password, token, secret,
// credential, auth, ...; not a *_file, *_path or *_url naming where one
// is) is replaced as well, so that a key added later with a plain string
// type cannot show its value here. Nothing is read from the files the
// configuration names (password_file, docker_config, tls.ca_file): they
// are shown as paths.
func (c *Config) Redacted() ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode the configuration: %w", err)
	}
	redactNode(&doc)
	return yaml.Marshal(&doc)
}

// secretKey reports whether a mapping key names a secret value.
func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, suffix := range []string{"_file", "_path", "_url", "_env", "_id"} {
		if strings.HasSuffix(k, suffix) {
			return false
		}
	}
	for _, word := range []string{"password", "passwd", "secret", "token", "credential", "apikey", "api_key", "private_key"} {
		if strings.Contains(k, word) {
			return true
		}
	}
	return k == "auth" || k == "key"
}

// redactNode replaces the scalars of n that are secrets: the value of a
// secret key, or each item of a list under one; a mapping under a key
// such as auth: is a section, walked like any other. Empty values stay:
// they say that no secret is set.
func redactNode(n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			v := n.Content[i+1]
			if secretKey(n.Content[i].Value) {
				redactScalars(v)
			}
			redactNode(v)
		}
	default: // documents, sequences, aliases, scalars
		for _, c := range n.Content {
			redactNode(c)
		}
	}
}

// redactScalars replaces a secret scalar, or the scalars of a list.
func redactScalars(n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "" && n.Tag != "!!null" {
			n.Value, n.Tag, n.Style = probe.Secret("x").String(), "!!str", 0
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			redactScalars(c)
		}
	}
}
