package program

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/jbcalling/platform/program/programtest"
)

const tCommand = "command:remote:Command"

func mocks() *pulumitest.Mocks { return programtest.Mocks() }

func config(t *testing.T, stack string) map[string]string {
	cfg := pulumitest.StackConfig(t, stack)
	if _, ok := cfg["platform:gcpProject"]; !ok {
		// A throwaway stack: only what `pulumi config set` would add.
		cfg = pulumitest.With(cfg, "platform:gcpProject", "ci-project",
			"platform:cloudflareZoneId", "ci-zone", "platform:adminCidrs", `["198.51.100.0/24"]`)
	}
	// The Cloudflare token is a `pulumi config set --secret` value in a real
	// stack; offline it is the placeholder Run marks secret.
	if _, ok := cfg["platform:acmeDnsToken"]; !ok {
		cfg = pulumitest.With(cfg, "platform:acmeDnsToken", pulumitest.SecretPlaceholder)
	}
	return cfg
}

func run(t *testing.T, stack string, cfg map[string]string) (*pulumitest.Mocks, error) {
	t.Helper()
	m := mocks()
	return m, pulumitest.RunWith(t, m, "platform", stack, cfg, Run)
}

func TestRunDeclaresClusterAndSwarm(t *testing.T) {
	for _, stack := range []string{"prod", "staging", "ci-123"} {
		t.Run(stack, func(t *testing.T) {
			m, err := run(t, stack, config(t, stack))
			if err != nil {
				t.Fatal(err)
			}
			if n := len(m.ByType("gcp:compute/instance:Instance")); n != 3 {
				t.Errorf("%d instances, want 3", n)
			}
			ips := map[string]bool{}
			for _, a := range m.ByType("gcp:compute/address:Address") {
				if ip := a.OutputString("address"); ips[ip] {
					t.Fatalf("mock addresses collide (%s); change the hash in programtest.Mocks", ip)
				} else {
					ips[ip] = true
				}
			}
			var names []string
			for _, c := range m.ByType(tCommand) {
				names = append(names, c.Name)
			}
			want := []string{
				"swarm-docker-api", "swarm-engine-translation01", "swarm-engine-translation02", "swarm-engine-translation03",
				"swarm-init", "swarm-join-translation02", "swarm-join-translation03",
				"swarm-label-translation01-edge", "swarm-label-translation01-instance",
				"swarm-label-translation02-instance", "swarm-label-translation02-media",
				"swarm-label-translation03-instance",
				"swarm-member-translation02", "swarm-member-translation03", "swarm-worker-token",
			}
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("commands:\n got %v\nwant %v", names, want)
			}
			if n := len(m.ByType("pulumi:providers:docker")); n != 1 {
				t.Errorf("%d docker providers, want 1", n)
			}
			// The VMs boot with the bootstrap's script and the generated key.
			for _, vm := range m.ByType("gcp:compute/instance:Instance") {
				if s := vm.InputString(`metadata["startup-script"]`); !strings.Contains(s, "docker.io") {
					t.Errorf("%s: startup script is not the bootstrap's", vm.Name)
				}
				if k := vm.InputString("metadata.ssh-keys"); !strings.Contains(k, "ssh-ed25519 ") {
					t.Errorf("%s: ssh-keys %q lack the generated key", vm.Name, k)
				}
			}
		})
	}
}

// Bad config fails before anything is registered, naming the key.
func TestBadConfigRegistersNothing(t *testing.T) {
	prod := config(t, "prod")
	for _, tc := range []struct {
		name string
		cfg  map[string]string
		want string
	}{
		{"subnet inside the overlay pool", pulumitest.With(prod, "platform:subnetCidr", "10.200.0.0/20"), "platform:subnetCidr"},
		{"MTU too small", pulumitest.With(prod, "platform:mtu", "1200"), "platform:mtu"},
		{"label without value", withLabels(t, prod, "translation03", "instance"), "instance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := run(t, "prod", tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
			if r := m.Resources(); len(r) != 0 {
				t.Errorf("%d resources registered before the error (first: %s %s)", len(r), r[0].Type, r[0].Name)
			}
		})
	}
}

// withLabels sets one node's labels in the platform:nodes config.
func withLabels(t *testing.T, cfg map[string]string, node string, labels ...string) map[string]string {
	t.Helper()
	var nodes []map[string]any
	pulumitest.Object(t, cfg, "platform:nodes", &nodes)
	found := false
	for _, n := range nodes {
		if n["name"] == node {
			n["labels"] = labels
			found = true
		}
	}
	if !found {
		t.Fatalf("no node %s in config", node)
	}
	return pulumitest.WithObject(t, cfg, "platform:nodes", nodes)
}

// snapshot is every registered resource's inputs by type and name: what
// `pulumi up` diffs against state.
func snapshot(t *testing.T, m *pulumitest.Mocks) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range m.Resources() {
		b, err := json.Marshal(r.InputMap())
		if err != nil {
			t.Fatal(err)
		}
		key := r.Type + " " + r.Name
		if _, dup := out[key]; dup {
			t.Fatalf("two resources %s", key)
		}
		out[key] = string(b)
	}
	return out
}

// diff lists the resources added (+), removed (-) or changed (~) from a to b.
func diff(a, b map[string]string) []string {
	var out []string
	for k, v := range b {
		if old, ok := a[k]; !ok {
			out = append(out, "+"+k)
		} else if old != v {
			out = append(out, "~"+k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, "-"+k)
		}
	}
	sort.Strings(out)
	return out
}

func TestRerunChangesNothing(t *testing.T) {
	cfg := config(t, "prod")
	m1, err := run(t, "prod", cfg)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := run(t, "prod", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(snapshot(t, m1), snapshot(t, m2)); len(d) != 0 {
		t.Errorf("the same config declares different resources: %v", d)
	}
}

// Adding, changing or removing one label in config touches exactly that
// label's resource.
func TestLabelChangeTouchesOnlyThatLabel(t *testing.T) {
	base := withLabels(t, config(t, "prod"), "translation03", "instance=translation03", "rack=r1")
	const label = tCommand + " swarm-label-translation03-"
	for _, tc := range []struct {
		name   string
		labels []string
		want   []string
	}{
		{"change a value", []string{"instance=translation03", "rack=r2"}, []string{"~" + label + "rack"}},
		{"remove a label", []string{"instance=translation03"}, []string{"-" + label + "rack"}},
		{"add a label", []string{"instance=translation03", "rack=r1", "disk=ssd"}, []string{"+" + label + "disk"}},
		{"reorder labels", []string{"rack=r1", "instance=translation03"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m1, err := run(t, "prod", base)
			if err != nil {
				t.Fatal(err)
			}
			m2, err := run(t, "prod", withLabels(t, base, "translation03", tc.labels...))
			if err != nil {
				t.Fatal(err)
			}
			got := diff(snapshot(t, m1), snapshot(t, m2))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("changed resources:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// The VPC, the daemon and docker_gwbridge (startup script), the ingress
// network (swarm init) and every overlay of the stack use one MTU: the
// config's. A larger overlay MTU than the VPC's drops big packets silently.
func TestOneMTUEverywhere(t *testing.T) {
	for _, tc := range []struct{ stack, mtu string }{{"prod", ""}, {"staging", ""}, {"prod", "1460"}, {"staging", "8896"}} {
		cfg := config(t, tc.stack)
		if tc.mtu != "" {
			cfg = pulumitest.With(cfg, "platform:mtu", tc.mtu)
		}
		t.Run(tc.stack+"/"+tc.mtu, func(t *testing.T) {
			m, err := run(t, tc.stack, cfg)
			if err != nil {
				t.Fatal(err)
			}
			vpc := m.ByType("gcp:compute/network:Network")
			if len(vpc) != 1 {
				t.Fatalf("%d VPCs", len(vpc))
			}
			mtu := vpc[0].InputString("mtu")
			if tc.mtu != "" && mtu != tc.mtu {
				t.Fatalf("VPC MTU %s, want %s", mtu, tc.mtu)
			}
			want := "readonly MTU='" + mtu + "'"
			for _, vm := range m.ByType("gcp:compute/instance:Instance") {
				if !strings.Contains(vm.InputString(`metadata["startup-script"]`), want) {
					t.Errorf("%s: startup script lacks %s", vm.Name, want)
				}
			}
			initCmd := strings.ReplaceAll(m.MustGet(t, tCommand, "swarm-init").InputString("create"), `'\''`, "'")
			if !strings.Contains(initCmd, want) {
				t.Errorf("swarm init (ingress network) lacks %s", want)
			}
			nets := m.ByType("docker:index/network:Network")
			if len(nets) == 0 {
				t.Fatal("the stack declares no overlay network")
			}
			for _, n := range nets {
				if got := n.InputString(`options["com.docker.network.driver.mtu"]`); got != mtu {
					t.Errorf("overlay %s: driver MTU %q, want the VPC's %s", n.Name, got, mtu)
				}
			}
		})
	}
}

// The last edge of the order: the service stack deploys through the swarm's
// provider only after every node has joined and every label is set.
func TestStackWaitsForTheSwarm(t *testing.T) {
	m, err := run(t, "prod", config(t, "prod"))
	if err != nil {
		t.Fatal(err)
	}
	var swarmSteps []pulumitest.Resource
	for _, c := range m.ByType(tCommand) {
		if strings.HasPrefix(c.Name, "swarm-label-") || strings.HasPrefix(c.Name, "swarm-join-") || c.Name == "swarm-init" {
			swarmSteps = append(swarmSteps, c)
		}
	}
	provider := m.MustGet(t, "pulumi:providers:docker", "swarm-docker")
	manager := m.MustGet(t, "gcp:compute/instance:Instance", "cluster-translation01")
	n := 0
	for _, r := range m.Resources() {
		if !r.Custom || !strings.HasPrefix(r.Type, "docker:") {
			continue
		}
		n++
		if !strings.HasPrefix(r.Provider, provider.URN+"::") {
			t.Errorf("%s %s is not deployed through the swarm's provider (%s)", r.Type, r.Name, r.Provider)
		}
		// Destroying a throwaway stack deletes the VMs; the swarm's objects
		// go with the manager instead of failing against a dead API.
		if r.DeletedWith != manager.URN {
			t.Errorf("%s %s is deleted with %q, want the manager VM", r.Type, r.Name, r.DeletedWith)
		}
		for _, s := range swarmSteps {
			if !r.DependsOn(s.URN) {
				t.Errorf("%s %s does not wait for %s", r.Type, r.Name, s.Name)
			}
		}
	}
	if n == 0 {
		t.Fatal("the program deploys no Docker resource")
	}
}
