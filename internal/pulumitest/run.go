package pulumitest

import (
	"context"
	"maps"
	"sort"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
)

// Run runs program as project/stack under fresh recording mocks with cfg as
// the stack configuration, waits for every output to resolve, and returns the
// recorder and the program's error. Config reaches the SDK through
// RunInfo.Config (what PULUMI_CONFIG fills in a real run), so tests do not
// touch the process environment and may run in parallel.
func Run(t testing.TB, project, stack string, cfg map[string]string, program pulumi.RunFunc) (*Mocks, error) {
	t.Helper()
	m := NewMocks()
	return m, RunWith(t, m, project, stack, cfg, program)
}

// RunWith is Run with a prepared recorder (hooks registered, Preview set).
func RunWith(t testing.TB, m *Mocks, project, stack string, cfg map[string]string, program pulumi.RunFunc) error {
	t.Helper()
	m.mu.Lock()
	m.project, m.stack = project, stack
	m.mu.Unlock()
	keys := secretKeys(cfg)
	sort.Strings(keys)
	return pulumi.RunErr(program,
		pulumi.WithMocks(project, stack, m),
		func(info *pulumi.RunInfo) {
			info.Config = maps.Clone(cfg)
			info.ConfigSecretKeys = keys
			info.DryRun = m.Preview
		})
}

// Awaited is a resolved output.
type Awaited struct {
	Value  any
	Known  bool
	Secret bool
	Deps   []pulumi.Resource
}

// Await resolves an output (call it after Run returned: every output of a
// mocked run is then resolved) and returns its value, knownness and secretness.
func Await(o pulumi.Output) (Awaited, error) {
	r, err := internals.UnsafeAwaitOutput(context.Background(), o)
	return Awaited{Value: r.Value, Known: r.Known, Secret: r.Secret, Deps: r.Dependencies}, err
}

// AwaitString is Await for string outputs; it fails the test on error.
func AwaitString(t testing.TB, o pulumi.StringOutput) (value string, known, secret bool) {
	t.Helper()
	r, err := Await(o)
	if err != nil {
		t.Fatalf("pulumitest.AwaitString: %v", err)
	}
	s, _ := r.Value.(string)
	return s, r.Known, r.Secret
}
