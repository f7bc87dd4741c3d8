package stacks

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// Operators read every key in docs/configuration.md: each key the cluster
// (infra/load.go) or the stack (config.go) reads has its row there, and
// each row names a key the code reads.
func TestEveryConfigKeyIsDocumented(t *testing.T) {
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	code := map[string]bool{}
	for _, m := range regexp.MustCompile(`\b(?:raw|str|num)\("([a-zA-Z]+)"`).FindAllStringSubmatch(read("../infra/load.go"), -1) {
		code["platform:"+m[1]] = true
	}
	for _, m := range regexp.MustCompile(`"((?:platform|cloudflare):[a-zA-Z]+)"`).FindAllStringSubmatch(read("config.go"), -1) {
		code[m[1]] = true
	}
	if len(code) < 20 {
		t.Fatalf("found only %d keys in the code; the patterns no longer match", len(code))
	}
	doc := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `((?:platform|cloudflare):[a-zA-Z]+)`").FindAllStringSubmatch(read("../docs/configuration.md"), -1) {
		doc[m[1]] = true
	}
	var missing, stale []string
	for k := range code {
		if !doc[k] {
			missing = append(missing, k)
		}
	}
	for k := range doc {
		if !code[k] {
			stale = append(stale, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(stale)
	if len(missing) > 0 {
		t.Errorf("docs/configuration.md has no row for %v", missing)
	}
	if len(stale) > 0 {
		t.Errorf("docs/configuration.md documents %v, which the code does not read", stale)
	}
}
