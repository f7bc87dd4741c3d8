package infra

import (
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

const (
	tInstance = "gcp:compute/instance:Instance"
	tAddress  = "gcp:compute/address:Address"
	tNetwork  = "gcp:compute/network:Network"
	tSubnet   = "gcp:compute/subnetwork:Subnetwork"
	tFirewall = "gcp:compute/firewall:Firewall"
	tRecord   = "cloudflare:index/record:Record"
	tAccount  = "gcp:serviceaccount/account:Account"
	tIAM      = "gcp:projects/iAMMember:IAMMember"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY test@example\n"

// program is what cmd/platform does with infra: load, plan, declare.
func program(cluster **Cluster) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cfg, err := LoadConfig(ctx)
		if err != nil {
			return err
		}
		top := Plan(cfg)
		scripts := map[string]string{}
		for _, n := range cfg.Nodes {
			scripts[n.Name] = "#!/bin/sh\necho " + n.Name + "\n"
		}
		c, err := NewCluster(ctx, "cluster", &ClusterArgs{
			Topology:       top,
			StartupScripts: scripts,
			SSHPublicKey:   pulumi.String(testKey),
		})
		if err != nil {
			return err
		}
		c.Export(ctx)
		if cluster != nil {
			*cluster = c
		}
		return nil
	}
}

func runStack(t *testing.T, stack string, cfg map[string]string) (*pulumitest.Mocks, *Cluster) {
	t.Helper()
	var c *Cluster
	m, err := pulumitest.Run(t, "platform", stack, cfg, program(&c))
	if err != nil {
		t.Fatalf("%s: %v", stack, err)
	}
	return m, c
}

func strs(v any) []string {
	arr, _ := v.([]any)
	var out []string
	for _, x := range arr {
		out = append(out, x.(string))
	}
	return out
}

func TestClusterInstances(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			cfg := pulumitest.StackConfig(t, stack)
			cf, _ := parse(stack, cfg)
			m, c := runStack(t, stack, cfg)
			vms := m.ByType(tInstance)
			if len(vms) != 3 {
				t.Fatalf("%d instances, want 3", len(vms))
			}
			want := map[string]struct {
				role string
				tags []string
			}{
				"translation01": {"manager", []string{stack + "-cluster", stack + "-manager", stack + "-edge"}},
				"translation02": {"worker", []string{stack + "-cluster", stack + "-media"}},
				"translation03": {"worker", []string{stack + "-cluster"}},
			}
			for node, w := range want {
				vm := m.MustGet(t, tInstance, "cluster-"+node)
				n, _ := cf.Node(node)
				if got := vm.InputString("name"); got != stack+"-"+node {
					t.Errorf("%s: GCP name %s", node, got)
				}
				if vm.InputString("labels.role") != w.role || vm.InputString("labels.node") != node || vm.InputString("labels.stack") != stack {
					t.Errorf("%s: labels %v", node, vm.InputMap()["labels"])
				}
				tags, _ := vm.Input("tags")
				if got := strs(tags); !reflect.DeepEqual(got, w.tags) {
					t.Errorf("%s: tags %v, want %v", node, got, w.tags)
				}
				if vm.InputString("machineType") != n.MachineType || vm.InputString("zone") != cf.Zone {
					t.Errorf("%s: machine %s zone %s", node, vm.InputString("machineType"), vm.InputString("zone"))
				}
				if got := vm.InputString("bootDisk.initializeParams.size"); got != strconv.Itoa(n.DiskSizeGB) {
					t.Errorf("%s: disk %s", node, got)
				}
				// Startup script in metadata, never metadataStartupScript.
				if _, ok := vm.Input("metadataStartupScript"); ok {
					t.Errorf("%s: metadataStartupScript set (recreates the VM on change)", node)
				}
				if got := vm.InputString("metadata.startup-script"); !strings.Contains(got, "echo "+node) {
					t.Errorf("%s: startup-script %q", node, got)
				}
				if got := vm.InputString("metadata.ssh-keys"); got != cf.SSHUser+":"+strings.TrimSpace(testKey) {
					t.Errorf("%s: ssh-keys %q", node, got)
				}
				if vm.InputString("metadata.block-project-ssh-keys") != "TRUE" {
					t.Errorf("%s: project ssh keys not blocked", node)
				}
				// Static external IP through accessConfigs natIp; static internal IP.
				ext := m.MustGet(t, tAddress, "cluster-"+node+"-ip")
				in := m.MustGet(t, tAddress, "cluster-"+node+"-internal-ip")
				if vm.InputString("networkInterfaces[0].accessConfigs[0].natIp") != ext.OutputString("address") {
					t.Errorf("%s: natIp %s, want %s", node, vm.InputString("networkInterfaces[0].accessConfigs[0].natIp"), ext.OutputString("address"))
				}
				if ip := cf.NodeInternalIP(node); vm.InputString("networkInterfaces[0].networkIp") != ip || in.InputString("address") != ip ||
					in.InputString("addressType") != "INTERNAL" || ext.InputString("addressType") != "EXTERNAL" {
					t.Errorf("%s: internal address %s / %s, want %s", node, vm.InputString("networkInterfaces[0].networkIp"), in.InputString("address"), ip)
				}
				// Static IPs are protected on prod only.
				if ext.Protect != (stack == "prod") || in.Protect != (stack == "prod") {
					t.Errorf("%s: protect ext=%v int=%v", node, ext.Protect, in.Protect)
				}
				if !vm.DependsOn(ext.URN) || !vm.DependsOn(in.URN) {
					t.Errorf("%s: instance does not depend on its addresses", node)
				}
				sa := m.MustGet(t, tAccount, "cluster-nodes-sa")
				if vm.InputString("serviceAccount.email") != sa.OutputString("email") {
					t.Errorf("%s: service account %s", node, vm.InputString("serviceAccount.email"))
				}
				// Component tree: instance and addresses under the node component, under the cluster.
				comp := m.MustGet(t, TypeNode, "cluster-"+node)
				if vm.Parent != comp.URN || ext.Parent != comp.URN || in.Parent != comp.URN {
					t.Errorf("%s: not parented to its node component", node)
				}
				if cl := m.MustGet(t, TypeCluster, "cluster"); comp.Parent != cl.URN {
					t.Errorf("%s: node component not under the cluster", node)
				}
				// Exposed outputs resolve to the addresses.
				if v, _, _ := pulumitest.AwaitString(t, c.Nodes[node].ExternalIP); v != ext.OutputString("address") {
					t.Errorf("%s: ExternalIP output %s", node, v)
				}
				if v, _, _ := pulumitest.AwaitString(t, c.Nodes[node].InternalIP); v != cf.NodeInternalIP(node) {
					t.Errorf("%s: InternalIP output %s", node, v)
				}
			}
		})
	}
}

func TestClusterNetworkAndServiceAccount(t *testing.T) {
	cfg := pulumitest.StackConfig(t, "prod")
	m, _ := runStack(t, "prod", cfg)
	nets := m.ByType(tNetwork)
	if len(nets) != 1 {
		t.Fatalf("networks %d", len(nets))
	}
	net := nets[0]
	if net.InputString("mtu") != "1500" || net.InputString("autoCreateSubnetworks") != "false" || net.InputString("name") != "prod-vpc" {
		t.Errorf("network: %v", net.InputMap())
	}
	sub := m.MustGet(t, tSubnet, "cluster-subnet")
	if sub.InputString("ipCidrRange") != "10.148.0.0/20" || sub.InputString("network") != net.ID || sub.InputString("region") != "asia-southeast1" {
		t.Errorf("subnet: %v", sub.InputMap())
	}
	// MTU from config reaches the network.
	m2, _ := runStack(t, "staging", pulumitest.With(pulumitest.StackConfig(t, "staging"), "platform:mtu", "1460"))
	if got := m2.ByType(tNetwork)[0].InputString("mtu"); got != "1460" {
		t.Errorf("mtu 1460 -> %s", got)
	}
	// Service account: only log/metric writer roles.
	var roles []string
	sa := m.MustGet(t, tAccount, "cluster-nodes-sa")
	for _, b := range m.ByType(tIAM) {
		roles = append(roles, b.InputString("role"))
		if b.InputString("member") != "serviceAccount:"+sa.OutputString("email") || b.InputString("project") != "replace-me-gcp-project" {
			t.Errorf("binding %v", b.InputMap())
		}
	}
	sort.Strings(roles)
	if !reflect.DeepEqual(roles, []string{"roles/logging.logWriter", "roles/monitoring.metricWriter"}) {
		t.Errorf("roles %v", roles)
	}
	// Explicit providers, configured from Config; every GCP resource uses it.
	gp := m.MustGet(t, "pulumi:providers:gcp", "cluster-gcp")
	if gp.InputString("project") != "replace-me-gcp-project" || gp.InputString("region") != "asia-southeast1" {
		t.Errorf("gcp provider %v", gp.InputMap())
	}
	for _, r := range m.Resources() {
		if r.Custom && strings.HasPrefix(r.Type, "gcp:") && !strings.Contains(r.Provider, "pulumi:providers:gcp::cluster-gcp") {
			t.Errorf("%s %s uses provider %q", r.Type, r.Name, r.Provider)
		}
		if r.Custom && strings.HasPrefix(r.Type, "cloudflare:") && !strings.Contains(r.Provider, "pulumi:providers:cloudflare::cluster-cloudflare") {
			t.Errorf("%s %s uses provider %q", r.Type, r.Name, r.Provider)
		}
	}
}

func TestCloudflareTokenIsSecret(t *testing.T) {
	cfg := pulumitest.With(pulumitest.StackConfig(t, "prod"), "cloudflare:apiToken", pulumitest.SecretPlaceholder)
	m, _ := runStack(t, "prod", cfg)
	p := m.MustGet(t, "pulumi:providers:cloudflare", "cluster-cloudflare")
	if !p.IsSecretInput("apiToken") || p.InputString("apiToken") != pulumitest.SecretPlaceholder {
		t.Errorf("apiToken not passed as a secret: %v", p.Inputs)
	}
	// Without the key the provider falls back to CLOUDFLARE_API_TOKEN.
	m, _ = runStack(t, "prod", pulumitest.StackConfig(t, "prod"))
	if _, ok := m.MustGet(t, "pulumi:providers:cloudflare", "cluster-cloudflare").Input("apiToken"); ok {
		t.Errorf("apiToken set without config")
	}
}

func TestClusterFirewall(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			cfg := pulumitest.StackConfig(t, stack)
			cf, _ := parse(stack, cfg)
			m, _ := runStack(t, stack, cfg)
			net := m.ByType(tNetwork)[0]
			rules := m.ByType(tFirewall)
			type rule struct {
				allows  map[string][]string // protocol -> ports
				sources []string
				srcTags []string
				targets []string
			}
			any4 := []string{"0.0.0.0/0"}
			admin := []string{"192.0.2.0/24"}
			cluster := []string{stack + "-cluster"}
			want := map[string]rule{
				"allow-web":           {map[string][]string{"tcp": {"80", "443"}}, CloudflareIPv4, nil, []string{stack + "-edge"}},
				"allow-signalling":    {map[string][]string{"tcp": {"8443"}}, CloudflareIPv4, nil, []string{stack + "-media"}},
				"allow-media":         {map[string][]string{"udp": {"40000-40100"}, "tcp": {"40000-40100"}}, any4, nil, []string{stack + "-media"}},
				"allow-swarm-manager": {map[string][]string{"tcp": {"2377"}}, nil, cluster, []string{stack + "-manager"}},
				"allow-swarm-nodes":   {map[string][]string{"tcp": {"7946"}, "udp": {"7946", "4789"}}, nil, cluster, cluster},
				"allow-admin-ssh":     {map[string][]string{"tcp": {"22"}}, admin, nil, cluster},
				"allow-admin-docker":  {map[string][]string{"tcp": {"2376"}}, admin, nil, []string{stack + "-manager"}},
			}
			if len(rules) != len(want) {
				t.Errorf("%d rules, want %d", len(rules), len(want))
			}
			for _, r := range rules {
				logical := strings.TrimPrefix(r.Name, "cluster-")
				w, ok := want[logical]
				if !ok {
					t.Errorf("unexpected rule %s", r.Name)
					continue
				}
				if r.InputString("name") != cf.ResourceName(logical) || r.InputString("network") != net.OutputString("selfLink") ||
					r.InputString("direction") != "INGRESS" {
					t.Errorf("%s: name %s network %s direction %s", logical, r.InputString("name"), r.InputString("network"), r.InputString("direction"))
				}
				got := map[string][]string{}
				allows, _ := r.Input("allows")
				for _, a := range allows.([]any) {
					am := a.(map[string]any)
					got[am["protocol"].(string)] = strs(am["ports"])
				}
				if !reflect.DeepEqual(got, w.allows) {
					t.Errorf("%s: allows %v, want %v", logical, got, w.allows)
				}
				src, _ := r.Input("sourceRanges")
				stags, _ := r.Input("sourceTags")
				ttags, _ := r.Input("targetTags")
				if !reflect.DeepEqual(strs(src), w.sources) || !reflect.DeepEqual(strs(stags), w.srcTags) || !reflect.DeepEqual(strs(ttags), w.targets) {
					t.Errorf("%s: sources %v srcTags %v targets %v; want %v %v %v", logical, strs(src), strs(stags), strs(ttags), w.sources, w.srcTags, w.targets)
				}
				// Each target tag is carried by the intended node(s) only.
				for _, tag := range strs(ttags) {
					var carriers []string
					for _, vm := range m.ByType(tInstance) {
						tags, _ := vm.Input("tags")
						for _, x := range strs(tags) {
							if x == tag {
								carriers = append(carriers, vm.InputString("name"))
							}
						}
					}
					if len(carriers) == 0 {
						t.Errorf("%s: target tag %s matches no VM", logical, tag)
					}
				}
			}
			// Nothing sensitive is open to the internet.
			for _, r := range rules {
				src, _ := r.Input("sourceRanges")
				for _, s := range strs(src) {
					if s != "0.0.0.0/0" {
						continue
					}
					allows, _ := r.Input("allows")
					for _, a := range allows.([]any) {
						am := a.(map[string]any)
						for _, p := range []int{22, 2375, 2376, 2377, 7946, 4789} {
							if portsContain(strs(am["ports"]), p) {
								t.Errorf("%s opens %d/%s to 0.0.0.0/0", r.Name, p, am["protocol"])
							}
						}
					}
				}
			}
		})
	}
}

func TestClusterDNS(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			cfg := pulumitest.StackConfig(t, stack)
			m, _ := runStack(t, stack, cfg)
			ip := func(node string) string { return m.MustGet(t, tAddress, "cluster-"+node+"-ip").OutputString("address") }
			if ip("translation01") == ip("translation02") {
				t.Fatal("fake addresses not distinct")
			}
			p := ""
			apex := "jbcalling.site"
			if stack != "prod" {
				p = stack + "-"
				apex = stack + ".jbcalling.site"
			}
			want := map[string]struct {
				name    string
				node    string
				proxied bool
			}{
				"apex":    {apex, "translation01", true},
				"www":     {p + "www.jbcalling.site", "translation01", true},
				"api":     {p + "api.jbcalling.site", "translation01", true},
				"grafana": {p + "grafana.jbcalling.site", "translation01", true},
				"webrtc":  {p + "webrtc.jbcalling.site", "translation02", true},
				"media":   {p + "media.jbcalling.site", "translation02", false},
			}
			recs := m.ByType(tRecord)
			if len(recs) != len(want) {
				t.Errorf("%d records, want %d", len(recs), len(want))
			}
			for sub, w := range want {
				r := m.MustGet(t, tRecord, "cluster-dns-"+sub)
				if r.InputString("name") != w.name || r.InputString("type") != "A" || r.InputString("proxied") != boolStr(w.proxied) {
					t.Errorf("%s: name %s type %s proxied %s; want %s A %v", sub, r.InputString("name"), r.InputString("type"), r.InputString("proxied"), w.name, w.proxied)
				}
				if got := r.InputString("content"); got != ip(w.node) {
					t.Errorf("%s: content %s, want %s's address %s", sub, got, w.node, ip(w.node))
				}
				if _, ok := r.Input("value"); ok {
					t.Errorf("%s: deprecated value set", sub)
				}
				if r.InputString("zoneId") != "REPLACE_ME_CLOUDFLARE_ZONE_ID" {
					t.Errorf("%s: zone %s", sub, r.InputString("zoneId"))
				}
				addr := m.MustGet(t, tAddress, "cluster-"+w.node+"-ip")
				if !r.DependsOn(addr.URN) {
					t.Errorf("%s: record does not depend on %s's address", sub, w.node)
				}
			}
		})
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// gcpNames collects every GCP physical name (name / accountId inputs) and network tag.
func gcpNames(m *pulumitest.Mocks) map[string]string {
	out := map[string]string{}
	for _, r := range m.Resources() {
		if !r.Custom || !strings.HasPrefix(r.Type, "gcp:") {
			continue
		}
		for _, k := range []string{"name", "accountId"} {
			if v := r.InputString(k); v != "" {
				out[r.Type+" "+v] = r.Name
			}
		}
		if r.Type == tInstance {
			tags, _ := r.Input("tags")
			for _, tag := range strs(tags) {
				out["tag "+tag] = r.Name
			}
		}
	}
	return out
}

func TestNoNameSharedBetweenProdAndStaging(t *testing.T) {
	mp, _ := runStack(t, "prod", pulumitest.StackConfig(t, "prod"))
	ms, _ := runStack(t, "staging", pulumitest.StackConfig(t, "staging"))
	pn, sn := gcpNames(mp), gcpNames(ms)
	if len(pn) < 20 || len(sn) < 20 {
		t.Fatalf("too few names collected: %d / %d", len(pn), len(sn))
	}
	for k := range pn {
		if _, clash := sn[k]; clash {
			t.Errorf("prod and staging both use %s", k)
		}
	}
	// Every named GCP resource carries its stack prefix.
	for k := range pn {
		if !strings.Contains(k, " prod-") {
			t.Errorf("prod name without prefix: %s", k)
		}
	}
	// DNS names differ too.
	hosts := map[string]bool{}
	for _, r := range mp.ByType(tRecord) {
		hosts[r.InputString("name")] = true
	}
	for _, r := range ms.ByType(tRecord) {
		if hosts[r.InputString("name")] {
			t.Errorf("prod and staging both publish %s", r.InputString("name"))
		}
	}
}

func TestThrowawayStackRuns(t *testing.T) {
	m, _ := runStack(t, "ci-123", throwaway())
	if n := len(m.ByType(tInstance)); n != 3 {
		t.Errorf("%d instances", n)
	}
	for k := range gcpNames(m) {
		if !strings.Contains(k, " ci-123-") {
			t.Errorf("throwaway name without prefix: %s", k)
		}
	}
	for _, a := range m.ByType(tAddress) {
		if a.Protect {
			t.Errorf("throwaway address %s protected (would block pulumi destroy)", a.Name)
		}
	}
}

// The throwaway workflow creates ci-<run id> with --copy-config-from staging:
// the copy must get its own names, tags and hostnames in the same project.
func TestStagingCopyDoesNotClashWithStaging(t *testing.T) {
	cfg := pulumitest.StackConfig(t, "staging")
	ms, _ := runStack(t, "staging", cfg)
	mc, _ := runStack(t, "ci-9876543210", cfg)
	sn := gcpNames(ms)
	for k := range gcpNames(mc) {
		if _, clash := sn[k]; clash {
			t.Errorf("ci copy reuses staging's %s", k)
		}
	}
	hosts := map[string]bool{}
	for _, r := range ms.ByType(tRecord) {
		hosts[r.InputString("name")] = true
	}
	for _, r := range mc.ByType(tRecord) {
		if hosts[r.InputString("name")] || !strings.HasPrefix(r.InputString("name"), "ci-9876543210") {
			t.Errorf("ci copy publishes %s", r.InputString("name"))
		}
	}
}

func TestBadConfigRegistersNothing(t *testing.T) {
	prod := pulumitest.StackConfig(t, "prod")
	for name, tc := range map[string]struct {
		cfg  map[string]string
		want string
	}{
		"label":  {nodesWith(t, func(n []map[string]any) []map[string]any { n[1]["labels"] = []string{"media"}; return n }), `platform:nodes[1].labels[0]: "media" is not key=value`},
		"mtu":    {pulumitest.With(prod, "platform:mtu", "9000"), "platform:mtu: 9000 is outside 1300-8896"},
		"domain": {pulumitest.With(prod, "platform:domain", ""), "platform:domain: must not be empty"},
		"ports":  {pulumitest.With(prod, "platform:mediaPortRange", "40100-40000"), "platform:mediaPortRange"},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := pulumitest.Run(t, "platform", "prod", tc.cfg, program(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if rs := m.Resources(); len(rs) != 0 {
				t.Errorf("%d resources registered despite bad config, first %s", len(rs), rs[0].Type)
			}
		})
	}
	// NewCluster re-validates a hand-built config before registering anything.
	m, err := pulumitest.Run(t, "platform", "prod", prod, func(ctx *pulumi.Context) error {
		cfg, err := LoadConfig(ctx)
		if err != nil {
			return err
		}
		top := Plan(cfg)
		cfg.MTU = 100
		_, err = NewCluster(ctx, "cluster", &ClusterArgs{Topology: top})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "platform:mtu") || len(m.Resources()) != 0 {
		t.Errorf("hand-built bad config: err %v, %d resources", err, len(m.Resources()))
	}
	// A startup script for a node that does not exist is refused.
	m, err = pulumitest.Run(t, "platform", "prod", prod, func(ctx *pulumi.Context) error {
		cfg, err := LoadConfig(ctx)
		if err != nil {
			return err
		}
		_, err = NewCluster(ctx, "cluster", &ClusterArgs{Topology: Plan(cfg), StartupScripts: map[string]string{"translation9": "x"}})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), `"translation9"`) || len(m.Resources()) != 0 {
		t.Errorf("unknown startup script node: err %v, %d resources", err, len(m.Resources()))
	}
}

func TestLabelChangeKeepsVMs(t *testing.T) {
	// Changing a Swarm label or a startup script changes only data the
	// bootstrap consumes: the instance inputs that force replacement
	// (name, machine type, zone, boot disk, network) stay the same.
	cfg := pulumitest.StackConfig(t, "prod")
	m1, _ := runStack(t, "prod", cfg)
	m2, _ := runStack(t, "prod", nodesWith(t, func(n []map[string]any) []map[string]any {
		n[2]["labels"] = []string{"instance=translation03", "tts=true"}
		return n
	}))
	for _, vm := range m1.ByType(tInstance) {
		vm2 := m2.MustGet(t, tInstance, vm.Name)
		for _, k := range []string{"name", "machineType", "zone", "bootDisk", "networkInterfaces", "tags", "labels"} {
			a, _ := vm.Input(k)
			b, _ := vm2.Input(k)
			if !reflect.DeepEqual(a, b) && k != "networkInterfaces" {
				t.Errorf("%s: %s changed with a Swarm label", vm.Name, k)
			}
		}
	}
}

func TestStackOutputs(t *testing.T) {
	var c *Cluster
	m, err := pulumitest.Run(t, "platform", "staging", pulumitest.StackConfig(t, "staging"), program(&c))
	if err != nil {
		t.Fatal(err)
	}
	r, err := pulumitest.Await(c.NodesOutput().ToMapOutput())
	if err != nil {
		t.Fatal(err)
	}
	nodes := r.Value.(map[string]any)
	n2 := nodes["translation02"].(map[string]any)
	if n2["internalIp"] != "10.150.0.3" || n2["externalIp"] != m.MustGet(t, tAddress, "cluster-translation02-ip").OutputString("address") ||
		n2["role"] != "worker" || n2["instance"] != "staging-translation02" {
		t.Errorf("nodes output %v", nodes)
	}
	if got := c.NodeNames(); !reflect.DeepEqual(got, []string{"translation01", "translation02", "translation03"}) {
		t.Errorf("NodeNames %v", got)
	}
}

// `pulumi preview` (outputs unknown) declares the same resources as `up`.
func TestPreviewDeclaresTheSameResources(t *testing.T) {
	cfg := pulumitest.StackConfig(t, "prod")
	up, _ := runStack(t, "prod", cfg)
	pm := pulumitest.NewMocks()
	pm.Preview = true
	if err := pulumitest.RunWith(t, pm, "platform", "prod", cfg, program(nil)); err != nil {
		t.Fatal(err)
	}
	names := func(m *pulumitest.Mocks) []string {
		var out []string
		for _, r := range m.Resources() {
			out = append(out, r.Type+" "+r.Name)
		}
		sort.Strings(out)
		return out
	}
	if a, b := names(up), names(pm); !reflect.DeepEqual(a, b) {
		t.Errorf("preview declares\n%v\nup declares\n%v", b, a)
	}
}

// The GCP and Cloudflare providers store some values in a form of their
// own; a value declared in another form shows as a change on every
// preview. Each declared value here is in the form they read back.
func TestDeclaredValuesInTheProvidersForm(t *testing.T) {
	shortName := regexp.MustCompile(`^[a-z][a-z0-9-]*[a-z0-9]$`) // zone, region, machine type: not a URL
	image := regexp.MustCompile(`^[a-z0-9-]+/[a-z0-9-]+$`)       // project/family
	port := regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)
	lower := regexp.MustCompile(`^[a-z0-9_-]*$`) // GCP labels and tags
	canonicalPrefix := func(s string) bool {
		p, err := netip.ParsePrefix(s)
		return err == nil && p.Masked() == p && p.String() == s
	}
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			m, _ := runStack(t, stack, pulumitest.StackConfig(t, stack))
			for _, typ := range []string{tInstance, tAddress, tSubnet, tFirewall, tRecord} {
				if len(m.ByType(typ)) == 0 {
					t.Fatalf("no %s to check", typ)
				}
			}
			for _, vm := range m.ByType(tInstance) {
				for _, path := range []string{"zone", "machineType"} {
					if v := vm.InputString(path); !shortName.MatchString(v) {
						t.Errorf("%s %s = %q: the provider reads back the short name", vm.Name, path, v)
					}
				}
				if v := vm.InputString("bootDisk.initializeParams.image"); !image.MatchString(v) {
					t.Errorf("%s image = %q: want project/family", vm.Name, v)
				}
				tags, _ := vm.Input("tags")
				for _, tag := range strs(tags) {
					if !lower.MatchString(tag) {
						t.Errorf("%s tag %q: GCP keeps tags lower case", vm.Name, tag)
					}
				}
				labels, _ := vm.Input("labels")
				for k, v := range labels.(map[string]any) {
					if !lower.MatchString(k) || !lower.MatchString(v.(string)) {
						t.Errorf("%s label %s=%v: GCP keeps labels lower case", vm.Name, k, v)
					}
				}
				scopes, _ := vm.Input("serviceAccount.scopes")
				for _, s := range strs(scopes) {
					if !strings.HasPrefix(s, "https://www.googleapis.com/auth/") {
						t.Errorf("%s scope %q: the provider stores the full URL", vm.Name, s)
					}
				}
			}
			for _, typ := range []string{tAddress, tSubnet} {
				for _, r := range m.ByType(typ) {
					if v := r.InputString("region"); !shortName.MatchString(v) {
						t.Errorf("%s region = %q: the provider reads back the short name", r.Name, v)
					}
				}
			}
			for _, r := range m.ByType(tSubnet) {
				if v := r.InputString("ipCidrRange"); !canonicalPrefix(v) {
					t.Errorf("%s ipCidrRange = %q: not a canonical prefix", r.Name, v)
				}
			}
			for _, fw := range m.ByType(tFirewall) {
				ranges, _ := fw.Input("sourceRanges")
				for _, s := range strs(ranges) {
					if !canonicalPrefix(s) {
						t.Errorf("%s source range %q: not a canonical prefix", fw.Name, s)
					}
				}
				allows, _ := fw.Input("allows")
				for _, a := range allows.([]any) {
					am := a.(map[string]any)
					if p := am["protocol"].(string); p != strings.ToLower(p) {
						t.Errorf("%s protocol %q: the provider stores it lower case", fw.Name, p)
					}
					for _, p := range strs(am["ports"]) {
						if !port.MatchString(p) {
							t.Errorf("%s port %q: want N or N-M", fw.Name, p)
						}
					}
				}
			}
			for _, r := range m.ByType(tRecord) {
				// Cloudflare answers TTL 1 (automatic) for proxied records.
				if r.InputString("proxied") == "true" && r.InputString("ttl") != "1" {
					t.Errorf("%s: proxied with ttl %s, read back as 1", r.Name, r.InputString("ttl"))
				}
				if a, err := netip.ParseAddr(r.InputString("content")); err != nil || a.String() != r.InputString("content") {
					t.Errorf("%s content %q: not an address in canonical form", r.Name, r.InputString("content"))
				}
			}
		})
	}
}
