package infra

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Namespace is the config namespace of the project (Pulumi.yaml name:), so
// keys are written platform:domain, platform:nodes, ...
const Namespace = "platform"

// Defaults of every key that has one (docs/configuration.md lists them;
// a stacks test keeps its rows in step with the keys read here).
const (
	DefaultRegion         = "asia-southeast1" // the seeds' 10.148.x addresses are this region's range
	DefaultDomain         = "jbcalling.site"
	DefaultSubnetCIDR     = "10.148.0.0/20"
	DefaultMediaPorts     = "40000-40100"
	DefaultSignallingPort = 8443
	// DefaultMTU is the VPC MTU. 1500 rather than GCP's 1460: Docker's
	// overlay driver derives its MTU from a 1500-byte base (1500 - 50 VXLAN
	// overhead) for every overlay that does not set
	// com.docker.network.driver.mtu, including the `ingress` network swarm
	// init creates, and docker0/docker_gwbridge default to 1500 too. With a
	// 1460 VPC one forgotten overlay silently drops large packets across
	// nodes (moby/libnetwork#2661); with 1500 the defaults fit, and the
	// bootstrap may still pass Config.MTU as the overlay option (it is the
	// underlay MTU the driver subtracts the VXLAN header from).
	DefaultMTU         = 1500
	DefaultSSHUser     = "deploy"
	DefaultMachineType = "e2-standard-2"
	DefaultDiskSizeGB  = 50
	DefaultImage       = "debian-cloud/debian-12"
)

// DefaultNodes is the node set of a stack that does not set platform:nodes
// (a throwaway `pulumi stack init ci-123` stack): the seeds' three nodes, at
// the same small sizes as staging.
func DefaultNodes() []Node {
	return []Node{
		{Name: "translation01", Role: RoleManager, MachineType: "e2-standard-4", Labels: []string{"instance=translation01"}},
		{Name: "translation02", Role: RoleWorker, MachineType: "e2-standard-2", Labels: []string{"instance=translation02"}},
		{Name: "translation03", Role: RoleWorker, MachineType: "e2-standard-2", Labels: []string{"instance=translation03"}},
	}
}

// LoadConfig reads the stack configuration once (namespace platform, plus
// gcp:project/gcp:region/gcp:zone as fallbacks), applies the defaults and
// validates it. It registers nothing, so a bad config fails before any
// resource exists; every error names its key.
func LoadConfig(ctx *pulumi.Context) (*Config, error) {
	return ParseConfig(ctx.Stack(), ctx.GetConfig)
}

// ParseConfig is LoadConfig over any source of raw config values, keyed by
// full key ("platform:nodes"), valued as the Pulumi CLI passes them (scalars
// as strings, lists and objects as JSON).
func ParseConfig(stack string, get func(key string) (string, bool)) (*Config, error) {
	r := &rawConfig{get: get}
	c := &Config{Stack: stack}
	c.Project = r.str("gcpProject", "")
	if c.Project == "" {
		c.Project, _ = get("gcp:project")
	}
	c.Region = r.str("gcpRegion", "")
	if c.Region == "" {
		c.Region = r.provider("gcp:region", DefaultRegion)
	}
	c.Zone = r.str("gcpZone", "")
	if c.Zone == "" {
		c.Zone = r.provider("gcp:zone", c.Region+"-a")
	}
	c.Domain = strings.TrimSuffix(strings.ToLower(r.str("domain", DefaultDomain)), ".")
	c.CloudflareZoneID = r.str("cloudflareZoneId", "")
	c.DNSPrefix = r.str("dnsPrefix", DefaultDNSPrefix(stack))
	r.nodes(c)
	if v, ok := r.raw("adminCidrs"); ok {
		list, err := stringList(v)
		if err != nil {
			r.bad("adminCidrs", "not a list of CIDRs: %v", err)
		}
		c.AdminCIDRs = list
	}
	c.SubnetCIDR = r.str("subnetCidr", DefaultSubnetCIDR)
	if pr, err := ParsePortRange(r.str("mediaPortRange", DefaultMediaPorts)); err != nil {
		r.bad("mediaPortRange", "%v", err)
	} else {
		c.MediaPorts = pr
	}
	c.SignallingPort = r.num("signallingPort", DefaultSignallingPort)
	c.MTU = r.num("mtu", DefaultMTU)
	c.SSHUser = r.str("sshUser", DefaultSSHUser)
	c.Protect = stack == "prod"
	if v, ok := r.raw("protect"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			r.bad("protect", "%q is not true or false", v)
		} else {
			c.Protect = b
		}
	}
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// rawConfig reads platform keys, collecting the values it cannot parse.
type rawConfig struct {
	get  func(key string) (string, bool)
	errs []error
}

func (r *rawConfig) bad(key, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s:%s: %s", Namespace, key, fmt.Sprintf(format, args...)))
}

func (r *rawConfig) raw(key string) (string, bool) {
	v, ok := r.get(Namespace + ":" + key)
	return strings.TrimSpace(v), ok
}

func (r *rawConfig) str(key, def string) string {
	if v, ok := r.raw(key); ok {
		return v
	}
	return def
}

func (r *rawConfig) num(key string, def int) int {
	v, ok := r.raw(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.bad(key, "%q is not a whole number", v)
		return def
	}
	return n
}

// provider is a provider's own key (gcp:region), or def when unset or
// empty.
func (r *rawConfig) provider(key, def string) string {
	if v, ok := r.get(key); ok && v != "" {
		return v
	}
	return def
}

// nodes reads the nodes with their defaults, and which of them hold the
// edge proxy and the media server.
func (r *rawConfig) nodes(c *Config) {
	if v, ok := r.raw("nodes"); ok {
		dec := json.NewDecoder(bytes.NewReader([]byte(v)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.Nodes); err != nil {
			r.bad("nodes", "not a list of nodes ({name, role, machineType, diskSizeGb, image, labels, internalIp}): %v", err)
		}
	} else {
		c.Nodes = DefaultNodes()
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		n.Role = cmp.Or(n.Role, RoleWorker)
		n.MachineType = cmp.Or(n.MachineType, DefaultMachineType)
		n.DiskSizeGB = cmp.Or(n.DiskSizeGB, DefaultDiskSizeGB)
		n.Image = cmp.Or(n.Image, DefaultImage)
	}
	c.EdgeNode = r.str("edgeNode", "")
	c.MediaNode = r.str("mediaNode", "")
	if c.EdgeNode == "" {
		// Traefik runs on the manager (it reads the Swarm API there).
		if m := c.Managers(); len(m) > 0 {
			c.EdgeNode = m[0].Name
		}
	}
	if c.MediaNode == "" {
		c.MediaNode = c.EdgeNode
		if i := slices.IndexFunc(c.Nodes, func(n Node) bool { return n.Role == RoleWorker }); i >= 0 {
			c.MediaNode = c.Nodes[i].Name
		}
	}
}

// stringList accepts a JSON list (`pulumi config set --path 'platform:adminCidrs[0]' ...`
// or a YAML list in the stack file) or a comma-separated string
// (`pulumi config set platform:adminCidrs 192.0.2.1/32,198.51.100.0/24`).
func stringList(v string) ([]string, error) {
	if strings.HasPrefix(v, "[") {
		var list []string
		if err := json.Unmarshal([]byte(v), &list); err != nil {
			return nil, err
		}
		return list, nil
	}
	var list []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			list = append(list, s)
		}
	}
	return list, nil
}

var portRangeRE = regexp.MustCompile(`^\s*(\d+)\s*-\s*(\d+)\s*$`)

// ParsePortRange parses "40000-40100" (inclusive) and checks it lies within
// 1024-65535 and is not reversed.
func ParsePortRange(s string) (PortRange, error) {
	m := portRangeRE.FindStringSubmatch(s)
	if m == nil {
		return PortRange{}, fmt.Errorf("%q is not a port range like 40000-40100", s)
	}
	from, _ := strconv.Atoi(m[1])
	to, _ := strconv.Atoi(m[2])
	r := PortRange{From: from, To: to}
	if from > to {
		return r, fmt.Errorf("%q is reversed (%d > %d)", s, from, to)
	}
	if from < 1024 || to > 65535 {
		return r, fmt.Errorf("%q is outside 1024-65535", s)
	}
	return r, nil
}

// String formats the range as GCP firewall rules and config write it.
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.From, r.To) }

// Contains reports whether port p is inside the range.
func (r PortRange) Contains(p int) bool { return p >= r.From && p <= r.To }

// Size is the number of ports in the range.
func (r PortRange) Size() int { return r.To - r.From + 1 }
