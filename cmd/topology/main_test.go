package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckDetectsStaleView: -check fails on a missing or edited rendering
// and passes once -write has refreshed it.
func TestCheckDetectsStaleView(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"Pulumi.yaml", "Pulumi.prod.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := run(root, "prod", false, true); err == nil || !strings.Contains(err.Error(), "docs/topology/prod.md") {
		t.Fatalf("check without a rendering: %v, want a stale error naming docs/topology/prod.md", err)
	}
	if err := run(root, "prod", true, false); err != nil {
		t.Fatal(err)
	}
	if err := run(root, "prod", false, true); err != nil {
		t.Fatalf("check right after write: %v", err)
	}
	path := filepath.Join(root, "docs", "topology", "prod.md")
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "| 3 |", "| 2 |", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(root, "prod", false, true); err == nil {
		t.Fatal("check passed on a hand-edited rendering")
	}
}

// An invalid stack is not rendered: the view only shows what could deploy.
func TestRenderRefusesInvalidStack(t *testing.T) {
	root := t.TempDir()
	copyFile := func(name, extra string) {
		b, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), append(b, extra...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile("Pulumi.yaml", "")
	copyFile("Pulumi.prod.yaml", "  platform:replicas: {sfu: 2}\n")
	if err := run(root, "prod", false, false); err == nil || !strings.Contains(err.Error(), `platform:replicas: service "sfu" cannot be scaled`) {
		t.Fatalf("got %v", err)
	}
}
