package stacks

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSourceHash: what rolls the SFU and the agent, and what does not.
func TestSourceHash(t *testing.T) {
	cases := []struct {
		name       string
		file       string
		sfu, agent bool
	}{
		{"server code", "sfu/server/server.go", true, true},
		{"browser client", "sfu/web/sfu.js", true, true},
		{"Dockerfile", "sfu/Dockerfile", true, true},
		{"new source file", "sfu/room/new.go", true, true},
		{"dependency bump", "go.sum", true, true},
		{"go.mod", "go.mod", true, true},
		{"agent code", "agent/rooms.go", false, true},
		{"agent Dockerfile", "agent/Dockerfile", false, true},
		{"a test", "sfu/server/server_test.go", false, false},
		{"an agent test", "agent/agent_test.go", false, false},
		{"test data", "sfu/signal/testdata/fuzz/x", false, false},
		{"outside both", "stacks/catalog.go", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range []string{"go.mod", "go.sum", "sfu/server/server.go", "sfu/server/server_test.go",
				"sfu/web/sfu.js", "sfu/Dockerfile", "sfu/signal/testdata/fuzz/x", "stacks/catalog.go",
				"agent/rooms.go", "agent/Dockerfile", "agent/agent_test.go"} {
				write(t, root, f, "v1 "+f)
			}
			hashes := func() map[string]string {
				out := map[string]string{}
				for _, svc := range []string{"sfu", "agent"} {
					h, err := SourceHash(root, svc)
					if err != nil {
						t.Fatal(err)
					}
					out[svc] = h
				}
				return out
			}
			before := hashes()
			write(t, root, tc.file, "v2")
			after := hashes()
			for svc, want := range map[string]bool{"sfu": tc.sfu, "agent": tc.agent} {
				if changed := before[svc] != after[svc]; changed != want {
					t.Errorf("changing %s: the %s hash changed = %t, want %t", tc.file, svc, changed, want)
				}
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
