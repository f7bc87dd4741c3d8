package pulumitest

import (
	"errors"
	"strings"
	"testing"

	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/compute"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

type box struct{ pulumi.ResourceState }

func TestRunRecordsResourcesParentsDependenciesAndOptions(t *testing.T) {
	cfg := map[string]string{
		"platform:region":     "asia-southeast1",
		"platform:nodes":      `[{"name":"a"},{"name":"b"}]`,
		"cloudflare:apiToken": SecretPlaceholder,
	}
	var gotToken pulumi.StringOutput
	var natIP, nicIP pulumi.StringOutput
	m, err := Run(t, "platform", "staging", cfg, func(ctx *pulumi.Context) error {
		c := config.New(ctx, "platform")
		var nodes []struct{ Name string }
		c.RequireObject("nodes", &nodes)
		if len(nodes) != 2 {
			return errors.New("nodes not decoded")
		}
		if !ctx.IsConfigSecret("cloudflare:apiToken") {
			return errors.New("placeholder not marked secret")
		}
		gotToken = config.RequireSecret(ctx, "cloudflare:apiToken")

		comp := &box{}
		if err := ctx.RegisterComponentResource("test:index:Box", "box", comp); err != nil {
			return err
		}
		addr, err := compute.NewAddress(ctx, "ip", &compute.AddressArgs{
			Region: pulumi.String(c.Require("region")),
		}, pulumi.Parent(comp), pulumi.Protect(true))
		if err != nil {
			return err
		}
		vm, err := compute.NewInstance(ctx, "vm", &compute.InstanceArgs{
			MachineType: pulumi.String("e2-small"),
			Zone:        pulumi.String("asia-southeast1-a"),
			BootDisk: compute.InstanceBootDiskArgs{InitializeParams: compute.InstanceBootDiskInitializeParamsArgs{
				Image: pulumi.String("debian-cloud/debian-12")}},
			NetworkInterfaces: compute.InstanceNetworkInterfaceArray{compute.InstanceNetworkInterfaceArgs{
				Network:       pulumi.String("default"),
				AccessConfigs: compute.InstanceNetworkInterfaceAccessConfigArray{compute.InstanceNetworkInterfaceAccessConfigArgs{NatIp: addr.Address}},
			}},
			Metadata: pulumi.StringMap{"ssh-keys": pulumi.ToSecret(pulumi.String("k")).(pulumi.StringOutput)},
		}, pulumi.Parent(comp), pulumi.DependsOn([]pulumi.Resource{addr}))
		if err != nil {
			return err
		}
		natIP = vm.NetworkInterfaces.Index(pulumi.Int(0)).AccessConfigs().Index(pulumi.Int(0)).NatIp().Elem()
		nicIP = vm.NetworkInterfaces.Index(pulumi.Int(0)).NetworkIp().Elem()
		_, err = compute.LookupNetwork(ctx, &compute.LookupNetworkArgs{Name: "default"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.Resources()); n != 3 {
		t.Fatalf("want 3 resources (component, address, instance), got %d: %+v", n, m.Resources())
	}
	comp := m.MustGet(t, "test:index:Box", "box")
	if comp.Custom || comp.Parent != m.StackURN() {
		t.Errorf("component: custom=%v parent=%s", comp.Custom, comp.Parent)
	}
	addr := m.MustGet(t, "gcp:compute/address:Address", "ip")
	vm := m.MustGet(t, "gcp:compute/instance:Instance", "vm")
	if addr.Parent != comp.URN || vm.Parent != comp.URN {
		t.Errorf("parents: addr %s vm %s, want %s", addr.Parent, vm.Parent, comp.URN)
	}
	if !strings.Contains(vm.URN, "test:index:Box$gcp:compute/instance:Instance::vm") {
		t.Errorf("urn %s does not carry the parent type", vm.URN)
	}
	if !addr.Protect || vm.Protect {
		t.Errorf("protect: addr %v vm %v", addr.Protect, vm.Protect)
	}
	if !vm.DependsOn(addr.URN) {
		t.Errorf("instance does not depend on the address: %v %v", vm.Dependencies, vm.PropertyDependencies)
	}
	ip := addr.OutputString("address")
	if !strings.HasPrefix(ip, "203.0.113.") {
		t.Errorf("fake external IP %q", ip)
	}
	if got := vm.InputString("networkInterfaces[0].accessConfigs[0].natIp"); got != ip {
		t.Errorf("natIp input %q, want the address %q", got, ip)
	}
	if !vm.IsSecretInput("metadata.ssh-keys") || vm.IsSecretInput("machineType") {
		t.Errorf("secret tracking wrong")
	}
	if vm.InputString("metadata.ssh-keys") != "k" {
		t.Errorf("secret not unwrapped")
	}
	calls := m.Calls()
	if len(calls) != 1 || calls[0].Token != "gcp:compute/getNetwork:getNetwork" {
		t.Errorf("calls: %+v", calls)
	}
	// Outputs resolved after Run returns.
	for name, o := range map[string]pulumi.StringOutput{"natIp": natIP, "networkIp": nicIP, "token": gotToken} {
		v, known, secret := AwaitString(t, o)
		if !known || v == "" {
			t.Errorf("%s: %q known=%v", name, v, known)
		}
		if name == "token" && (!secret || v != SecretPlaceholder) {
			t.Errorf("token: %q secret=%v", v, secret)
		}
	}
}

func TestProgramErrorIsReturned(t *testing.T) {
	m, err := Run(t, "platform", "ci-1", nil, func(ctx *pulumi.Context) error {
		return errors.New("platform:domain: must not be empty")
	})
	if err == nil || !strings.Contains(err.Error(), "platform:domain") {
		t.Fatalf("err = %v", err)
	}
	if len(m.Resources()) != 0 {
		t.Fatalf("resources registered: %v", m.Resources())
	}
}

func TestHooksAndPreview(t *testing.T) {
	m := NewMocks().
		OnResource("gcp:compute/address:Address", func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
			outs["address"] = resource.NewProperty("192.0.2.7")
			return outs, nil
		}).
		OnCall("gcp:compute/getNetwork:getNetwork", func(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
			return resource.PropertyMap{"selfLink": resource.NewProperty("link-" + args.Args["name"].StringValue())}, nil
		})
	m.Preview = true
	var link string
	var addr pulumi.StringOutput
	err := RunWith(t, m, "platform", "ci-2", nil, func(ctx *pulumi.Context) error {
		if !ctx.DryRun() {
			return errors.New("not a preview")
		}
		a, err := compute.NewAddress(ctx, "ip", &compute.AddressArgs{})
		if err != nil {
			return err
		}
		addr = a.Address
		n, err := compute.LookupNetwork(ctx, &compute.LookupNetworkArgs{Name: "vpc"})
		if err != nil {
			return err
		}
		link = n.SelfLink
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if link != "link-vpc" {
		t.Errorf("call hook: %q", link)
	}
	if v, _, _ := AwaitString(t, addr); v != "192.0.2.7" {
		t.Errorf("resource hook: %q", v)
	}
}

func TestStackConfigReadsRealFiles(t *testing.T) {
	if ProjectName(t) != "platform" {
		t.Fatalf("project %q", ProjectName(t))
	}
	// A throwaway stack has no file: project defaults only, never an error.
	cfg := StackConfig(t, "ci-does-not-exist")
	for k := range cfg {
		if !strings.Contains(k, ":") {
			t.Errorf("unqualified key %q", k)
		}
	}
	cfg2 := With(cfg, "platform:domain", "example.org")
	if cfg2["platform:domain"] != "example.org" || cfg["platform:domain"] == "example.org" {
		t.Errorf("With must copy")
	}
	if _, ok := Without(cfg2, "platform:domain")["platform:domain"]; ok {
		t.Errorf("Without kept the key")
	}
}

func TestEncodeValue(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{"x", "x"}, {8443, "8443"}, {true, "true"}, {1.5, "1.5"},
		{[]any{"a", "b"}, `["a","b"]`},
		{map[string]any{"name": "n", "labels": []any{"k=v"}}, `{"labels":["k=v"],"name":"n"}`},
		{map[string]any{"secure": "v1:abc"}, SecretPlaceholder},
	} {
		got, _, err := encodeValue(c.in)
		if err != nil || got != c.want {
			t.Errorf("encodeValue(%v) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
