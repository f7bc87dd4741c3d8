package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if b, err := Read(write("s", "s3cret\r\n")); err != nil || string(b) != "s3cret" {
		t.Errorf("%q, %v; want the secret without its newline", b, err)
	}
	if _, err := Read(write("empty", "\n")); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("an empty secret: %v, want an error saying so", err)
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file: no error")
	}
}
