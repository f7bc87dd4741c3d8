package stacks

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSFUSourceHash: what rolls the SFU and what does not.
func TestSFUSourceHash(t *testing.T) {
	cases := []struct {
		name   string
		file   string
		change bool
	}{
		{"server code", "sfu/server/server.go", true},
		{"browser client", "sfu/web/sfu.js", true},
		{"Dockerfile", "sfu/Dockerfile", true},
		{"new source file", "sfu/room/new.go", true},
		{"dependency bump", "go.sum", true},
		{"go.mod", "go.mod", true},
		{"a test", "sfu/server/server_test.go", false},
		{"test data", "sfu/signal/testdata/fuzz/x", false},
		{"outside sfu/", "stacks/catalog.go", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range []string{"go.mod", "go.sum", "sfu/server/server.go", "sfu/server/server_test.go",
				"sfu/web/sfu.js", "sfu/Dockerfile", "sfu/signal/testdata/fuzz/x", "stacks/catalog.go"} {
				write(t, root, f, "v1 "+f)
			}
			before, err := SFUSourceHash(root)
			if err != nil {
				t.Fatal(err)
			}
			write(t, root, tc.file, "v2")
			after, err := SFUSourceHash(root)
			if err != nil {
				t.Fatal(err)
			}
			if (before != after) != tc.change {
				t.Errorf("changing %s: hash changed = %t, want %t", tc.file, before != after, tc.change)
			}
		})
	}
}

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
