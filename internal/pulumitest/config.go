// Package pulumitest runs Pulumi Go programs offline under the SDK's mocks and
// records every resource they register, so tests can assert on inputs,
// parents, dependencies and resource options. Configuration comes from the
// repository's real Pulumi.<stack>.yaml files (StackConfig), so the tests
// exercise exactly what `pulumi up` would read.
package pulumitest

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// SecretPlaceholder replaces every `secure:` value of a stack file (the
// ciphertext cannot be decrypted offline). Run marks every key holding this
// value as a secret config key, as the Pulumi CLI would.
const SecretPlaceholder = "pulumitest-dummy-secret"

// RepoRoot walks up from the working directory to the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("pulumitest: getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("pulumitest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// ProjectName is the `name:` of the repository's Pulumi.yaml.
func ProjectName(t testing.TB) string {
	t.Helper()
	var proj struct {
		Name string `yaml:"name"`
	}
	raw, err := os.ReadFile(filepath.Join(RepoRoot(t), "Pulumi.yaml"))
	if err != nil {
		t.Fatalf("pulumitest: %v", err)
	}
	if err := yaml.Unmarshal(raw, &proj); err != nil || proj.Name == "" {
		t.Fatalf("pulumitest: Pulumi.yaml has no project name (%v)", err)
	}
	return proj.Name
}

// StackConfig reads the repository's real Pulumi.<stack>.yaml (plus the
// project-level `config:` defaults of Pulumi.yaml) and returns the config map
// the way the Pulumi CLI hands it to a Go program (PULUMI_CONFIG):
//   - keys are fully qualified ("platform:domain"); un-namespaced keys get the
//     project name, as the CLI does;
//   - scalars are strings ("8443", "true");
//   - objects and lists are JSON-encoded, ready for config.GetObject;
//   - `secure:` values are replaced with SecretPlaceholder (and treated as
//     secret by Run); the real ciphertext is never needed offline.
//
// A stack with no file (a throwaway stack such as "ci-123") yields only the
// project defaults, which is what `pulumi stack init` gives you.
func StackConfig(t testing.TB, stack string) map[string]string {
	t.Helper()
	root := RepoRoot(t)
	project := ProjectName(t)
	out := map[string]string{}

	// Project-level defaults (Pulumi.yaml `config:`), lowest precedence.
	var proj struct {
		Config map[string]any `yaml:"config"`
	}
	if raw, err := os.ReadFile(filepath.Join(root, "Pulumi.yaml")); err == nil {
		if err := yaml.Unmarshal(raw, &proj); err != nil {
			t.Fatalf("pulumitest: Pulumi.yaml: %v", err)
		}
	}
	for k, v := range proj.Config {
		// Either `key: value` or `key: {type:..., default: value}`.
		if m, ok := v.(map[string]any); ok {
			d, has := m["default"]
			if !has {
				continue
			}
			v = d
		}
		s, _, err := encodeValue(v)
		if err != nil {
			t.Fatalf("pulumitest: Pulumi.yaml config %s: %v", k, err)
		}
		out[qualify(project, k)] = s
	}

	path := filepath.Join(root, "Pulumi."+stack+".yaml")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return out
	} else if err != nil {
		t.Fatalf("pulumitest: %v", err)
	}
	var file struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("pulumitest: %s: %v", path, err)
	}
	for k, v := range file.Config {
		s, _, err := encodeValue(v)
		if err != nil {
			t.Fatalf("pulumitest: %s: %s: %v", path, k, err)
		}
		out[qualify(project, k)] = s
	}
	return out
}

func qualify(project, key string) string {
	if strings.Contains(key, ":") {
		return key
	}
	return project + ":" + key
}

// encodeValue turns one YAML config value into the string the CLI passes.
func encodeValue(v any) (string, bool, error) {
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return x, false, nil
	case bool:
		return strconv.FormatBool(x), false, nil
	case int:
		return strconv.Itoa(x), false, nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), false, nil
	case map[string]any:
		if _, ok := x["secure"]; ok && len(x) == 1 {
			return SecretPlaceholder, true, nil
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false, err
	}
	return string(b), false, nil
}

// With returns a copy of cfg with the given key/value pairs set; a value of
// nil-like "" is kept as an empty string (use Without to delete a key).
// Keys without a namespace are left as given.
func With(cfg map[string]string, kv ...string) map[string]string {
	if len(kv)%2 != 0 {
		panic("pulumitest.With: odd number of key/value arguments")
	}
	out := maps.Clone(cfg)
	if out == nil {
		out = map[string]string{}
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// WithObject returns a copy of cfg with key set to the JSON encoding of v
// (for list/object keys such as platform:nodes).
func WithObject(t testing.TB, cfg map[string]string, key string, v any) map[string]string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("pulumitest.WithObject(%s): %v", key, err)
	}
	return With(cfg, key, string(b))
}

// Without returns a copy of cfg without the given keys.
func Without(cfg map[string]string, keys ...string) map[string]string {
	out := maps.Clone(cfg)
	if out == nil {
		out = map[string]string{}
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

// Object decodes the JSON-encoded list/object config value at key into out.
func Object(t testing.TB, cfg map[string]string, key string, out any) {
	t.Helper()
	s, ok := cfg[key]
	if !ok {
		t.Fatalf("pulumitest.Object: config has no %s", key)
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		t.Fatalf("pulumitest.Object(%s): %v", key, err)
	}
}

func secretKeys(cfg map[string]string) []string {
	var keys []string
	for k, v := range cfg {
		if v == SecretPlaceholder {
			keys = append(keys, k)
		}
	}
	return keys
}
