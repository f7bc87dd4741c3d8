package pulumitest

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The real-engine tests run the program (or part of it) through the real
// Pulumi engine (the CLI, with the Automation API's inline programs: no
// language host) and the real provider plugins, at the versions go.mod
// pins. The plugins come from no registry this machine reaches: build them
// from the providers' repositories and name their directory in
// PLATFORM_PULUMI_PLUGINS (or put them on PATH). Without them these tests
// skip, saying so. The CLI is PLATFORM_PULUMI, else `pulumi` on PATH, else
// built from the module proxy by scripts/pulumi-cli.

// pinned is a dependency's version as go.mod pins it.
func pinned(t testing.TB, module string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(RepoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == module {
			return strings.TrimPrefix(f[1], "v")
		}
	}
	t.Fatalf("go.mod does not require %s", module)
	return ""
}

// pluginSDKs are the provider SDKs whose plugins a program needs, by
// plugin name.
var pluginSDKs = map[string]string{
	"docker":     "github.com/pulumi/pulumi-docker/sdk/v4",
	"random":     "github.com/pulumi/pulumi-random/sdk/v4",
	"tls":        "github.com/pulumi/pulumi-tls/sdk/v5",
	"command":    "github.com/pulumi/pulumi-command/sdk",
	"gcp":        "github.com/pulumi/pulumi-gcp/sdk/v7",
	"cloudflare": "github.com/pulumi/pulumi-cloudflare/sdk/v5",
}

// Engine is a Pulumi CLI and a PULUMI_HOME holding the plugins.
type Engine struct {
	cmd  auto.PulumiCommand
	home string
	env  map[string]string
}

// RealEngine finds the CLI and the named plugins, or skips t saying what
// is missing.
func RealEngine(t *testing.T, plugins ...string) Engine {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the real-engine test")
	}
	dir := os.Getenv("PLATFORM_PULUMI_PLUGINS")
	home := t.TempDir()
	var missing []string
	for _, name := range plugins {
		bin := "pulumi-resource-" + name
		path := filepath.Join(dir, bin)
		if _, err := os.Stat(path); dir == "" || err != nil {
			if path, err = exec.LookPath(bin); err != nil {
				missing = append(missing, bin)
				continue
			}
		}
		version := pinned(t, pluginSDKs[name])
		pd := filepath.Join(home, "plugins", "resource-"+name+"-v"+version)
		if err := os.MkdirAll(pd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path, filepath.Join(pd, bin)); err != nil {
			t.Fatal(err)
		}
	}
	if len(missing) > 0 {
		t.Skipf("provider plugins not found in PLATFORM_PULUMI_PLUGINS (%q) or on PATH: %s; no registry here serves them: build them from the providers' repositories at the versions go.mod pins",
			dir, strings.Join(missing, ", "))
	}
	cli := os.Getenv("PLATFORM_PULUMI")
	if cli == "" {
		cli, _ = exec.LookPath("pulumi")
	}
	if cli == "" {
		out, err := exec.Command(filepath.Join(RepoRoot(t), "scripts", "pulumi-cli")).Output()
		if err != nil {
			t.Fatalf("building the Pulumi CLI (scripts/pulumi-cli): %v", err)
		}
		cli = strings.TrimSpace(string(out))
	}
	root := t.TempDir() // auto wants <root>/bin/pulumi
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cli, filepath.Join(root, "bin", "pulumi")); err != nil {
		t.Fatal(err)
	}
	cmd, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: root, SkipVersionCheck: true, Version: semver.MustParse("3.0.0")})
	if err != nil {
		t.Fatalf("the Pulumi CLI at %s: %v", cli, err)
	}
	state := t.TempDir()
	return Engine{cmd: cmd, home: home, env: map[string]string{
		"PULUMI_BACKEND_URL":                          "file://" + state,
		"PULUMI_CONFIG_PASSPHRASE":                    "real-engine-test",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
		"PULUMI_SKIP_UPDATE_CHECK":                    "true",
		"PULUMI_IGNORE_AMBIENT_PLUGINS":               "true",
	}}
}

// WithEnv is e with more environment variables for the CLI and plugins.
func (e Engine) WithEnv(kv ...string) Engine {
	env := maps.Clone(e.env)
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	e.env = env
	return e
}

// Stack is an inline program's stack in the engine's file backend, with
// config (full keys, e.g. platform:gcpProject; secret ones set as secrets
// when secret lists them).
func (e Engine) Stack(t *testing.T, name string, program pulumi.RunFunc, config map[string]string, secret ...string) auto.Stack {
	t.Helper()
	ctx := context.Background()
	s, err := auto.UpsertStackInlineSource(ctx, name, ProjectName(t), program,
		auto.Pulumi(e.cmd), auto.PulumiHome(e.home), auto.EnvVars(e.env))
	if err != nil {
		t.Fatalf("creating stack %s: %v", name, err)
	}
	for k, v := range config {
		if err := s.SetConfig(ctx, k, auto.ConfigValue{Value: v, Secret: slices.Contains(secret, k)}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Changes is a preview's or update's counts but for unchanged resources.
func Changes[K ~string](c map[K]int) map[string]int {
	out := map[string]int{}
	for op, n := range c {
		if op != K(apitype.OpSame) && n > 0 {
			out[string(op)] = n
		}
	}
	return out
}
