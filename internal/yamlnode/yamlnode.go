// Package yamlnode looks up keys in yaml.v3 node trees: the configuration
// loaders (collector/config, collector/credprovider) keep the node tree to
// name the line of every problem they report.
package yamlnode

import "gopkg.in/yaml.v3"

// MapValue returns the value node of key in mapping n, or nil when n is
// not a mapping or has no such key.
func MapValue(n *yaml.Node, key string) *yaml.Node {
	if k := keyIndex(n, key); k >= 0 {
		return n.Content[k+1]
	}
	return nil
}

// MapKey returns the key node of key in mapping n (its line is where the
// key is written), or nil.
func MapKey(n *yaml.Node, key string) *yaml.Node {
	if k := keyIndex(n, key); k >= 0 {
		return n.Content[k]
	}
	return nil
}

func keyIndex(n *yaml.Node, key string) int {
	if n == nil || n.Kind != yaml.MappingNode {
		return -1
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return i
		}
	}
	return -1
}
