// Command chartdoc writes a Helm chart's README from its README.md.gotmpl,
// the comments of its values.yaml and the types of its values.schema.json
// (internal/chartdoc). scripts/deploy.sh generate runs it:
//
//	go run ./internal/cmd/chartdoc -chart deploy/helm/imagepull-exporter -o README.md
//
// It fails, writing nothing, when values.yaml and the schema disagree or a
// value has no comment.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/imagepull/imagepull_exporter/internal/chartdoc"
)

func main() {
	chart := flag.String("chart", "deploy/helm/imagepull-exporter", "the chart's directory")
	out := flag.String("o", "", "where to write the README (default: README.md in the chart's directory)")
	flag.Parse()
	if *out == "" {
		*out = *chart + "/README.md"
	}
	b, err := chartdoc.Render(*chart)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chartdoc: %s:\n%v\n", *chart, err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		os.Exit(1)
	}
}
