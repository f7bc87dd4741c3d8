package infra

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func parse(stack string, cfg map[string]string) (*Config, error) {
	return ParseConfig(stack, func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
}

func mustLoad(t *testing.T, stack string) *Config {
	t.Helper()
	c, err := parse(stack, pulumitest.StackConfig(t, stack))
	if err != nil {
		t.Fatalf("Pulumi.%s.yaml: %v", stack, err)
	}
	return c
}

// throwaway is the minimum a `pulumi stack init ci-123` stack must set.
func throwaway() map[string]string {
	return map[string]string{
		"platform:gcpProject":       "my-project-123",
		"platform:cloudflareZoneId": "0123456789abcdef0123456789abcdef",
		"platform:adminCidrs":       "198.51.100.7/32",
	}
}

func TestLoadConfigProd(t *testing.T) {
	c := mustLoad(t, "prod")
	if c.Stack != "prod" || c.Domain != "jbcalling.site" || c.Region != "asia-southeast1" {
		t.Errorf("prod basics: %+v", c)
	}
	if len(c.Nodes) != 3 || c.Manager().Name != "translation01" || c.EdgeNode != "translation01" || c.MediaNode != "translation02" {
		t.Errorf("prod nodes: %+v edge=%s media=%s", c.Nodes, c.EdgeNode, c.MediaNode)
	}
	if !c.Protect || c.DNSPrefix != "" || c.MTU != 1500 || c.SignallingPort != 8443 || c.MediaPorts != (PortRange{40000, 40100}) {
		t.Errorf("prod settings: protect=%v prefix=%q mtu=%d sig=%d media=%v", c.Protect, c.DNSPrefix, c.MTU, c.SignallingPort, c.MediaPorts)
	}
	for _, n := range c.Nodes {
		if n.LabelMap()["instance"] != n.Name {
			t.Errorf("%s: labels %v lack instance=%s (the seeds' constraints use it)", n.Name, n.Labels, n.Name)
		}
		if _, ok := MachineMemoryMB(n.MachineType); !ok {
			t.Errorf("%s: unknown machine type %s", n.Name, n.MachineType)
		}
	}
	// Sizes of the hand-run cluster: 01 8 vCPU/>=30 GB, 02 8 vCPU/15-16 GB, 03 4 vCPU/8-16 GB.
	want := map[string][2]int{"translation01": {8, 30 * 1024}, "translation02": {8, 15 * 1024}, "translation03": {4, 8 * 1024}}
	for name, w := range want {
		n, _ := c.Node(name)
		cpu, _ := MachineVCPUs(n.MachineType)
		mem, _ := MachineMemoryMB(n.MachineType)
		if cpu != w[0] || mem < w[1] {
			t.Errorf("%s: %s has %d vCPU / %d MiB, want %d vCPU / >= %d MiB", name, n.MachineType, cpu, mem, w[0], w[1])
		}
	}
	if got := c.ManagerInternalIP(); got != "10.148.0.2" {
		t.Errorf("manager internal IP %s", got)
	}
	if got := c.NodeInternalIP("translation02"); got != "10.148.0.3" {
		t.Errorf("translation02 internal IP %s, the seeds had 10.148.0.3", got)
	}
}

func TestLoadConfigStaging(t *testing.T) {
	p, s := mustLoad(t, "prod"), mustLoad(t, "staging")
	if s.Project != p.Project {
		t.Errorf("staging must share prod's project: %s vs %s", s.Project, p.Project)
	}
	if s.Protect || s.DNSPrefix != "staging-" || s.SubnetCIDR == p.SubnetCIDR {
		t.Errorf("staging: protect=%v prefix=%q subnet=%s", s.Protect, s.DNSPrefix, s.SubnetCIDR)
	}
	var pm, sm int
	for i := range p.Nodes {
		a, _ := MachineMemoryMB(p.Nodes[i].MachineType)
		b, _ := MachineMemoryMB(s.Nodes[i].MachineType)
		pm, sm = pm+a, sm+b
	}
	if sm >= pm {
		t.Errorf("staging is not smaller: %d MiB vs prod %d MiB", sm, pm)
	}
}

func TestThrowawayStackDefaults(t *testing.T) {
	c, err := parse("ci-123", throwaway())
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != DefaultRegion || c.Zone != "asia-southeast1-a" || c.Domain != DefaultDomain ||
		c.SubnetCIDR != DefaultSubnetCIDR || c.MTU != DefaultMTU || c.SignallingPort != 8443 ||
		c.MediaPorts.String() != "40000-40100" || c.SSHUser != DefaultSSHUser || c.Protect {
		t.Errorf("defaults: %+v", c)
	}
	if c.DNSPrefix != "ci-123-" || c.Hostname("") != "ci-123.jbcalling.site" || c.Hostname("api") != "ci-123-api.jbcalling.site" {
		t.Errorf("hostnames: prefix %q apex %s api %s", c.DNSPrefix, c.Hostname(""), c.Hostname("api"))
	}
	if c.ResourceName("translation01") != "ci-123-translation01" {
		t.Errorf("resource name %s", c.ResourceName("translation01"))
	}
	if len(c.Nodes) != 3 || c.EdgeNode != "translation01" || c.MediaNode != "translation02" {
		t.Errorf("default nodes: %+v edge %s media %s", c.Nodes, c.EdgeNode, c.MediaNode)
	}
	for _, n := range c.Nodes {
		if n.Image != DefaultImage || n.DiskSizeGB != DefaultDiskSizeGB || n.MachineType == "" {
			t.Errorf("node defaults: %+v", n)
		}
	}
	// gcp:project and gcp:region are honoured as fallbacks.
	cfg := throwaway()
	delete(cfg, "platform:gcpProject")
	cfg["gcp:project"] = "other-project"
	cfg["gcp:region"] = "europe-west1"
	c, err = parse("ci-9", cfg)
	if err != nil || c.Project != "other-project" || c.Zone != "europe-west1-a" {
		t.Errorf("fallbacks: %+v %v", c, err)
	}
	// Comma list and JSON list for adminCidrs.
	cfg = pulumitest.With(throwaway(), "platform:adminCidrs", "198.51.100.7/32, 192.0.2.0/24")
	if c, err = parse("ci-9", cfg); err != nil || len(c.AdminCIDRs) != 2 {
		t.Errorf("comma list: %v %v", c, err)
	}
	// Odd stack names still give valid GCP names and hostnames.
	c, err = parse("Dev_Alice.2", throwaway())
	if err != nil || c.ResourceName("vpc") != "dev-alice-2-vpc" || c.Hostname("api") != "dev-alice-2-api.jbcalling.site" {
		t.Errorf("odd stack: %v %v", c, err)
	}
}

func TestLoadConfigUnderPulumi(t *testing.T) {
	var got *Config
	m, err := pulumitest.Run(t, "platform", "staging", pulumitest.StackConfig(t, "staging"), func(ctx *pulumi.Context) error {
		var err error
		got, err = LoadConfig(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Stack != "staging" || len(got.Nodes) != 3 || got.AdminCIDRs[0] != "192.0.2.0/24" {
		t.Errorf("LoadConfig via ctx: %+v", got)
	}
	if len(m.Resources()) != 0 {
		t.Errorf("LoadConfig registered resources")
	}
}

func nodesWith(t *testing.T, mutate func(n []map[string]any) []map[string]any) map[string]string {
	t.Helper()
	cfg := pulumitest.StackConfig(t, "prod")
	var nodes []map[string]any
	pulumitest.Object(t, cfg, "platform:nodes", &nodes)
	return pulumitest.WithObject(t, cfg, "platform:nodes", mutate(nodes))
}

func TestBadConfig(t *testing.T) {
	prod := pulumitest.StackConfig(t, "prod")
	set := func(kv ...string) map[string]string { return pulumitest.With(prod, kv...) }
	cases := []struct {
		name string
		cfg  map[string]string
		want string // substring of the error: key and problem
	}{
		{"no manager", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[0]["role"] = "worker"
			return n
		}), "platform:nodes: 0 managers: exactly one node must have role manager"},
		{"two managers", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[1]["role"] = "manager"
			return n
		}), "platform:nodes: 2 managers: exactly one node must have role manager (this bootstrap initialises a single-manager swarm)"},
		{"bad role", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[2]["role"] = "leader"
			return n
		}), `platform:nodes[2].role: "leader" is not manager or worker`},
		{"duplicate node name", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[2]["name"] = "translation02"
			return n
		}), `platform:nodes[2].name: "translation02" is also the name of nodes[1]; node names must be unique`},
		{"label not key=value", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[1]["labels"] = []string{"media"}
			return n
		}), `platform:nodes[1].labels[0]: "media" is not key=value`},
		{"label empty key", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[0]["labels"] = []string{"instance=translation01", "=x"}
			return n
		}), `platform:nodes[0].labels[1]: "=x" is not key=value`},
		{"label set twice", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[0]["labels"] = []string{"instance=a", "instance=b"}
			return n
		}), `platform:nodes[0].labels[1]: "instance=b": label "instance" is set twice`},
		{"invalid node name", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[2]["name"] = "Translation_03"
			return n
		}), `platform:nodes[2].name: "Translation_03" is not a valid GCP/DNS name`},
		{"unknown node field", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[0]["machine"] = "e2-small"
			return n
		}), `platform:nodes: not a list of nodes`},
		{"no nodes", pulumitest.WithObject(t, prod, "platform:nodes", []any{}), "platform:nodes: no nodes"},
		{"internal IP outside subnet", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[0]["internalIp"] = "10.1.0.5"
			return n
		}), "platform:nodes[0].internalIp: 10.1.0.5 is not a usable address of 10.148.0.0/20"},
		{"internal IP clash", nodesWith(t, func(n []map[string]any) []map[string]any {
			n[2]["internalIp"] = "10.148.0.3"
			return n
		}), "platform:nodes[2].internalIp: 10.148.0.3 is also the address of translation02"},
		{"edge node undeclared", set("platform:edgeNode", "translation09"), `platform:edgeNode: "translation09" is not one of the declared nodes`},
		{"media node undeclared", set("platform:mediaNode", "sfu"), `platform:mediaNode: "sfu" is not one of the declared nodes`},
		{"port range reversed", set("platform:mediaPortRange", "40100-40000"), `platform:mediaPortRange: "40100-40000" is reversed`},
		{"port range below 1024", set("platform:mediaPortRange", "1000-2000"), `platform:mediaPortRange: "1000-2000" is outside 1024-65535`},
		{"port range above 65535", set("platform:mediaPortRange", "65000-70000"), `platform:mediaPortRange: "65000-70000" is outside 1024-65535`},
		{"port range garbage", set("platform:mediaPortRange", "40000"), `platform:mediaPortRange: "40000" is not a port range`},
		{"port range swallows swarm port", set("platform:mediaPortRange", "7000-8000"), "platform:mediaPortRange: 7000-8000 contains 7946, a Docker/Swarm port"},
		{"signalling inside media range", set("platform:mediaPortRange", "8000-9000"), "platform:signallingPort: 8443 is inside the media port range 8000-9000"},
		{"signalling not a Cloudflare port", set("platform:signallingPort", "9443"), "platform:signallingPort: 9443 is not a port Cloudflare proxies over HTTPS"},
		{"signalling below 1024", set("platform:signallingPort", "443", "platform:mediaNode", "translation01"), "platform:signallingPort: 443 is outside 1024-65535"},
		{"signalling not a number", set("platform:signallingPort", "eighty"), `platform:signallingPort: "eighty" is not a whole number`},
		{"mtu too small", set("platform:mtu", "1200"), "platform:mtu: 1200 is outside 1300-8896"},
		{"mtu too large", set("platform:mtu", "9000"), "platform:mtu: 9000 is outside 1300-8896"},
		{"malformed admin CIDR", set("platform:adminCidrs", `["192.0.2.0/33"]`), `platform:adminCidrs[0]: "192.0.2.0/33" is not a CIDR`},
		{"admin CIDR not a network", set("platform:adminCidrs", `["192.0.2.7/24"]`), `platform:adminCidrs[0]: "192.0.2.7/24" is not a network address (did you mean 192.0.2.0/24?)`},
		{"admin CIDR is the internet", set("platform:adminCidrs", `["0.0.0.0/0"]`), `platform:adminCidrs[0]: "0.0.0.0/0" would open SSH and the Docker API`},
		{"no admin CIDR", pulumitest.Without(prod, "platform:adminCidrs"), "platform:adminCidrs: required"},
		{"malformed subnet", set("platform:subnetCidr", "10.148.0.0"), `platform:subnetCidr: "10.148.0.0" is not a CIDR`},
		{"public subnet", set("platform:subnetCidr", "8.8.0.0/16"), `platform:subnetCidr: "8.8.0.0/16" must be a private (RFC 1918) range`},
		{"empty domain", set("platform:domain", ""), "platform:domain: must not be empty"},
		{"bad domain", set("platform:domain", "jbcalling"), `platform:domain: "jbcalling" is not a DNS name`},
		{"no project", pulumitest.Without(prod, "platform:gcpProject"), "platform:gcpProject: required"},
		{"bad project", set("platform:gcpProject", "My Project"), `platform:gcpProject: "My Project" is not a GCP project id`},
		{"no zone id", pulumitest.Without(prod, "platform:cloudflareZoneId"), "platform:cloudflareZoneId: required"},
		{"zone outside region", set("platform:gcpZone", "europe-west1-b"), `platform:gcpZone: "europe-west1-b" is not a zone of region asia-southeast1`},
		{"bad dns prefix", set("platform:dnsPrefix", "Staging"), `platform:dnsPrefix: "Staging" must be lowercase`},
		{"bad protect", set("platform:protect", "maybe"), `platform:protect: "maybe" is not true or false`},
		{"bad ssh user", set("platform:sshUser", "root user"), `platform:sshUser: "root user" is not a Linux user name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse("prod", tc.cfg)
			if err == nil {
				t.Fatalf("accepted; want error %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
		})
	}

	// A non-prod stack may not take prod's names.
	if _, err := parse("staging", pulumitest.With(pulumitest.StackConfig(t, "staging"), "platform:dnsPrefix", "")); err == nil ||
		!strings.Contains(err.Error(), `platform:dnsPrefix: empty: stack "staging" would take prod's hostnames`) {
		t.Errorf("empty prefix on staging: %v", err)
	}
	// Every problem is reported, not just the first.
	_, err := parse("prod", set("platform:mtu", "1", "platform:domain", ""))
	if err == nil || !strings.Contains(err.Error(), "platform:mtu") || !strings.Contains(err.Error(), "platform:domain") {
		t.Errorf("want both errors: %v", err)
	}
}

func TestHostnameScheme(t *testing.T) {
	prod, staging := mustLoad(t, "prod"), mustLoad(t, "staging")
	for _, c := range []struct {
		cfg  *Config
		sub  string
		want string
	}{
		{prod, "", "jbcalling.site"}, {prod, "api", "api.jbcalling.site"}, {prod, "webrtc", "webrtc.jbcalling.site"},
		{staging, "", "staging.jbcalling.site"}, {staging, "api", "staging-api.jbcalling.site"},
		{staging, "media", "staging-media.jbcalling.site"},
	} {
		if got := c.cfg.Hostname(c.sub); got != c.want {
			t.Errorf("%s Hostname(%q) = %s, want %s", c.cfg.Stack, c.sub, got, c.want)
		}
		// One level below the domain: covered by Cloudflare's universal *.domain certificate.
		if h := c.cfg.Hostname(c.sub); h != c.cfg.Domain && strings.Count(strings.TrimSuffix(h, "."+c.cfg.Domain), ".") != 0 {
			t.Errorf("%s is more than one level below %s", h, c.cfg.Domain)
		}
	}
	if prod.SignallingURL() != "wss://webrtc.jbcalling.site:8443" {
		t.Errorf("signalling URL %s", prod.SignallingURL())
	}
}

func TestHelpers(t *testing.T) {
	c := mustLoad(t, "prod")
	if got := c.ResourceName("translation01"); got != "prod-translation01" {
		t.Errorf("ResourceName %s", got)
	}
	n1, _ := c.Node("translation01")
	n2, _ := c.Node("translation02")
	n3, _ := c.Node("translation03")
	if got := c.NodeTags(n1); !reflect.DeepEqual(got, []string{"prod-cluster", "prod-manager", "prod-edge"}) {
		t.Errorf("tags 01 %v", got)
	}
	if got := c.NodeTags(n2); !reflect.DeepEqual(got, []string{"prod-cluster", "prod-media"}) {
		t.Errorf("tags 02 %v", got)
	}
	if got := c.NodeTags(n3); !reflect.DeepEqual(got, []string{"prod-cluster"}) {
		t.Errorf("tags 03 %v", got)
	}
	if got := n2.LabelMap(); !reflect.DeepEqual(got, map[string]string{"instance": "translation02"}) {
		t.Errorf("labels %v", got)
	}
	if got := c.SwarmLabels(n2); !reflect.DeepEqual(got, map[string]string{"instance": "translation02", "media": "true"}) {
		t.Errorf("swarm labels %v", got)
	}
	for mt, want := range map[string]int{"e2-standard-8": 32768, "e2-custom-8-16384": 16384, "n2-standard-4": 16384, "c2-standard-8": 32768, "n1-standard-8": 30720} {
		if got, ok := MachineMemoryMB(mt); !ok || got != want {
			t.Errorf("MachineMemoryMB(%s) = %d %v", mt, got, ok)
		}
	}
	if _, ok := MachineMemoryMB("z9-mega"); ok {
		t.Errorf("unknown type known")
	}
	if cpu, _ := MachineVCPUs("e2-custom-8-16384"); cpu != 8 {
		t.Errorf("vcpus %d", cpu)
	}
	long := &Config{Stack: "a-very-long-throwaway-stack-name-for-ci"}
	if id := long.ServiceAccountID(); len(id) > 30 || len(id) < 6 || !gcpNameRE.MatchString(id) {
		t.Errorf("service account id %q", id)
	}
	b, _ := json.Marshal(Node{Name: "x"})
	if strings.Contains(string(b), "internalIp") {
		t.Errorf("internalIp not omitempty: %s", b)
	}
}

func TestSingleNodeCluster(t *testing.T) {
	cfg := pulumitest.With(throwaway(), "platform:nodes", `[{"name":"solo","role":"manager"}]`)
	c, err := parse("ci-1", cfg)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := c.Node("solo")
	if c.EdgeNode != "solo" || c.MediaNode != "solo" ||
		!reflect.DeepEqual(c.NodeTags(n), []string{"ci-1-cluster", "ci-1-manager", "ci-1-edge", "ci-1-media"}) {
		t.Errorf("single node: edge %s media %s tags %v", c.EdgeNode, c.MediaNode, c.NodeTags(n))
	}
	// 443 is Traefik's (and below 1024).
	if _, err := parse("ci-1", pulumitest.With(cfg, "platform:signallingPort", "443")); err == nil ||
		!strings.Contains(err.Error(), "platform:signallingPort: 443 is outside 1024-65535") {
		t.Errorf("443: %v", err)
	}
}
