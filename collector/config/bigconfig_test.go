package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// bigConfig is a generated configuration of about size bytes: a module and
// many targets, with tail appended (a late mistake).
func bigConfig(size int, tail string) []byte {
	var b strings.Builder
	b.WriteString("modules:\n  local: {plain_http: true}\ntargets:\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "  - name: target-%d\n    image: registry.example.com/team/app-%d:v1\n    module: local\n", i, i)
	}
	b.WriteString(tail)
	return []byte(b.String())
}

// BenchmarkParseBigConfig prints what a 12 MB file costs to parse when it is
// valid and when a mistake sits at its end: a syntax error (located by
// syntaxErrorLine), a type error and, on every target, an unknown key
// (located through the locate index). No timing is asserted.
func BenchmarkParseBigConfig(b *testing.B) {
	const size = 12 << 20
	cases := map[string][]byte{
		"valid":             bigConfig(size, ""),
		"late-syntax-error": bigConfig(size, "  - name: x\n   image: bad indent\n"),
		"late-type-error":   bigConfig(size, "  - name: x\n    image: a/b:c\n    interval: [1]\n"),
		"unknown-key-every": []byte(strings.ReplaceAll(string(bigConfig(size, "")), "module: local", "modul: local")),
	}
	for _, name := range []string{"valid", "late-syntax-error", "late-type-error", "unknown-key-every"} {
		data := cases[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				_, _ = Parse("big.yml", data)
			}
		})
	}
}

// TestBigConfigErrors: the error of a large generated file is bounded: a
// late syntax error is located to a range that holds it (the search stops
// at its byte budget), and a mistake repeated on every target is listed 20
// times, then counted.
func TestBigConfigErrors(t *testing.T) {
	data := bigConfig(16<<10, "  - name: x\n   image: bad indent\n")
	bad := bytes.Count(data, []byte("\n")) // the mis-indented line
	// Within the budget, the line is exact.
	_, err := Parse("big.yml", data)
	want := fmt.Sprintf("big.yml:%d: invalid YAML: did not find expected '-' indicator", bad)
	if err == nil || err.Error() != want {
		t.Errorf("Parse = %v\nwant %s", err, want)
	}
	// Past it, a range that holds the line.
	defer func(b int) { syntaxSearchBudget = b }(syntaxSearchBudget)
	syntaxSearchBudget = 64 << 10
	_, err = Parse("big.yml", data)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 {
		t.Fatalf("Parse = %v", err)
	}
	p := ce.Problems[0]
	m := regexp.MustCompile(`to line (\d+) `).FindStringSubmatch(p.Msg)
	if m == nil {
		t.Fatalf("problem %+v does not give a range", p)
	}
	upTo, _ := strconv.Atoi(m[1])
	if p.Line > bad || upTo < bad || !strings.HasPrefix(p.Msg, "invalid YAML: ") {
		t.Errorf("problem %+v does not hold line %d", p, bad)
	}

	data = []byte(strings.ReplaceAll(string(bigConfig(16<<10, "")), "module: local", "modul: local"))
	_, err = Parse("big.yml", data)
	if !errors.As(err, &ce) || len(ce.Problems) != maxProblems+1 {
		t.Fatalf("Parse = %v", err)
	}
	n := bytes.Count(data, []byte("modul: local"))
	if got, want := ce.Problems[maxProblems].Msg, fmt.Sprintf("and %d more problems; fix the ones above first", n-maxProblems); got != want {
		t.Errorf("last problem %q, want %q", got, want)
	}
	if want := `target "target-0": unknown key "modul"; did you mean "module"?`; !strings.HasPrefix(ce.Problems[0].Msg, want) || ce.Problems[0].Line != 6 {
		t.Errorf("first problem %+v, want line 6: %s...", ce.Problems[0], want)
	}
}

// TestLoadTooLarge: Load refuses a file over MaxFileSize and reads no more
// of it than MaxFileSize+1 bytes (a FIFO or device would never end).
func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yml")
	if err := os.WriteFile(path, []byte("modules: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, MaxFileSize+1); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := path + ": the file is 16.0 MiB (16777217 bytes), over the limit of 16 MiB for a configuration file; nothing was loaded. Check that the path names the configuration and not another file, and keep it under the limit (list many registries with discovery: rather than one target each)"
	if err == nil || err.Error() != want {
		t.Errorf("Load = %v\nwant %s", err, want)
	}
	if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "the file is more than 16 MiB, over the limit") {
		t.Errorf("Load(/dev/zero) = %v", err)
	}
	// Exactly at the limit is allowed (and parsed: here, a YAML error).
	if err := os.Truncate(path, MaxFileSize); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || strings.Contains(err.Error(), "over the limit") {
		t.Errorf("Load of a file at the limit = %v", err)
	}
}
