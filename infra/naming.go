package infra

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// gcpNameRE is the RFC 1035 form GCP requires of resource names and network
// tags (1-63 chars, lowercase letter first, no trailing hyphen).
var gcpNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// stackSlug turns a Pulumi stack name (which may hold upper case, dots,
// underscores) into something usable inside GCP names and DNS labels.
func stackSlug(stack string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(stack) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteRune('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		s = "s" + s
	}
	return s
}

// DefaultDNSPrefix is "" for the prod stack and "<stack>-" otherwise.
func DefaultDNSPrefix(stack string) string {
	if stack == "prod" {
		return ""
	}
	return stackSlug(stack) + "-"
}

// ResourceName is the GCP name of a logical resource: "<stack>-<name>"
// (prod-translation01, staging-vpc), so stacks never clash in one project.
func (c *Config) ResourceName(name string) string {
	return stackSlug(c.Stack) + "-" + name
}

// ServiceAccountID is the account id of the nodes' service account
// (6-30 chars, GCP's limit, so long stack names are shortened with a hash).
func (c *Config) ServiceAccountID() string {
	id := c.ResourceName("nodes")
	if len(id) <= 30 {
		return id
	}
	sum := sha256.Sum256([]byte(c.Stack))
	h := hex.EncodeToString(sum[:])[:6]
	return strings.TrimRight(id[:30-7], "-") + "-" + h
}

// Hostname returns the FQDN of a sub-name ("" = apex, "api", "webrtc", ...).
//
// Scheme: prod (empty prefix) gets <sub>.<domain> and <domain>; every other
// stack gets <prefix><sub>.<domain> and <prefix minus '-'>.<domain>:
// staging-api.jbcalling.site, staging.jbcalling.site. All names stay one level
// below the domain, the only level Cloudflare's free Universal certificate
// covers (*.jbcalling.site); api.staging.jbcalling.site would need an
// Advanced certificate.
func (c *Config) Hostname(sub string) string {
	if sub == "" {
		if c.DNSPrefix == "" {
			return c.Domain
		}
		return strings.TrimSuffix(c.DNSPrefix, "-") + "." + c.Domain
	}
	return c.DNSPrefix + sub + "." + c.Domain
}

// URL is "https://" + Hostname(sub).
func (c *Config) URL(sub string) string { return "https://" + c.Hostname(sub) }

// SignallingURL is the SFU's WebSocket URL: wss://<webrtc host>:<signallingPort>/
// (Cloudflare proxies WebSockets on 8443 and its other HTTPS ports).
func (c *Config) SignallingURL() string {
	return fmt.Sprintf("wss://%s:%d", c.Hostname(SubWebRTC), c.SignallingPort)
}

// Node returns the node with the logical name.
func (c *Config) Node(name string) (Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Managers returns the manager nodes (Validate ensures exactly one).
func (c *Config) Managers() []Node { return c.byRole(RoleManager) }

// Workers returns the worker nodes.
func (c *Config) Workers() []Node { return c.byRole(RoleWorker) }

// Manager returns the single manager (zero Node if the config is invalid).
func (c *Config) Manager() Node {
	if m := c.Managers(); len(m) > 0 {
		return m[0]
	}
	return Node{}
}

func (c *Config) byRole(r Role) []Node {
	var out []Node
	for _, n := range c.Nodes {
		if n.Role == r {
			out = append(out, n)
		}
	}
	return out
}

// LabelMap returns the node's Swarm labels (as written in config) as a map.
// Malformed entries (Validate rejects them) are skipped.
func (n Node) LabelMap() map[string]string {
	m := map[string]string{}
	for _, l := range n.Labels {
		k, v, ok := strings.Cut(l, "=")
		if ok && k != "" {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// SwarmLabels are the labels the bootstrap puts on the node: its configured
// labels plus instance=<name> (what the seeds' placement constraints use,
// node.labels.instance == translation02) unless configured, and edge=true /
// media=true on the edge and media nodes.
func (c *Config) SwarmLabels(n Node) map[string]string {
	m := n.LabelMap()
	if _, ok := m["instance"]; !ok {
		m["instance"] = n.Name
	}
	if n.Name == c.EdgeNode {
		m["edge"] = "true"
	}
	if n.Name == c.MediaNode {
		m["media"] = "true"
	}
	return m
}

// Network tags (per stack, so rules of one stack never match another's VMs).
func (c *Config) ClusterTag() string { return c.ResourceName("cluster") }
func (c *Config) ManagerTag() string { return c.ResourceName("manager") }
func (c *Config) EdgeTag() string    { return c.ResourceName("edge") }
func (c *Config) MediaTag() string   { return c.ResourceName("media") }

// NodeTags are the network tags of a node: the cluster tag on every node,
// plus manager, edge and media tags by role. Firewall rules target these.
func (c *Config) NodeTags(n Node) []string {
	tags := []string{c.ClusterTag()}
	if n.Role == RoleManager {
		tags = append(tags, c.ManagerTag())
	}
	if n.Name == c.EdgeNode {
		tags = append(tags, c.EdgeTag())
	}
	if n.Name == c.MediaNode {
		tags = append(tags, c.MediaTag())
	}
	return tags
}

// GCPLabels are the GCP resource labels of a node's VM (not Swarm labels).
func (c *Config) GCPLabels(n Node) map[string]string {
	return map[string]string{
		"stack":      stackSlug(c.Stack),
		"node":       n.Name,
		"role":       string(n.Role),
		"managed-by": "pulumi",
	}
}

// NodeInternalIP is the node's static internal address: Node.InternalIP if
// set, else host number i+2 of the subnet for the i-th node (GCP reserves
// the first two and last two addresses of a subnet).
func (c *Config) NodeInternalIP(name string) string {
	for i, n := range c.Nodes {
		if n.Name != name {
			continue
		}
		if n.InternalIP != "" {
			return n.InternalIP
		}
		p, err := netip.ParsePrefix(c.SubnetCIDR)
		if err != nil {
			return ""
		}
		a := p.Masked().Addr()
		for j := 0; j < i+2; j++ {
			a = a.Next()
		}
		return a.String()
	}
	return ""
}

// ManagerInternalIP is the address workers join (<ip>:2377).
func (c *Config) ManagerInternalIP() string { return c.NodeInternalIP(c.Manager().Name) }

// machineMemoryMB covers the predefined types this project uses or is likely
// to switch to; custom types (e2-custom-8-16384) are parsed.
var machineMemoryMB = map[string]int{
	"e2-micro": 1024, "e2-small": 2048, "e2-medium": 4096,
	"e2-standard-2": 8192, "e2-standard-4": 16384, "e2-standard-8": 32768, "e2-standard-16": 65536, "e2-standard-32": 131072,
	"e2-highmem-2": 16384, "e2-highmem-4": 32768, "e2-highmem-8": 65536, "e2-highmem-16": 131072,
	"e2-highcpu-2": 2048, "e2-highcpu-4": 4096, "e2-highcpu-8": 8192, "e2-highcpu-16": 16384, "e2-highcpu-32": 32768,
	"n1-standard-1": 3840, "n1-standard-2": 7680, "n1-standard-4": 15360, "n1-standard-8": 30720, "n1-standard-16": 61440,
	"n2-standard-2": 8192, "n2-standard-4": 16384, "n2-standard-8": 32768, "n2-standard-16": 65536,
	"n2-highmem-2": 16384, "n2-highmem-4": 32768, "n2-highmem-8": 65536,
	"n2-highcpu-2": 2048, "n2-highcpu-4": 4096, "n2-highcpu-8": 8192, "n2-highcpu-16": 16384,
	"n2d-standard-2": 8192, "n2d-standard-4": 16384, "n2d-standard-8": 32768,
	"c2-standard-4": 16384, "c2-standard-8": 32768, "c2-standard-16": 65536,
	"c2d-standard-2": 8192, "c2d-standard-4": 16384, "c2d-standard-8": 32768,
	"c2d-highcpu-2": 4096, "c2d-highcpu-4": 8192, "c2d-highcpu-8": 16384,
}

var customTypeRE = regexp.MustCompile(`^(?:(e2|n2|n2d|n1)-)?custom-(\d+)-(\d+)(?:-ext)?$`)

// MachineMemoryMB returns the memory of a GCP machine type in MiB
// (e2-standard-8 → 32768; e2-custom-8-16384 → 16384).
func MachineMemoryMB(machineType string) (int, bool) {
	if mb, ok := machineMemoryMB[machineType]; ok {
		return mb, true
	}
	if m := customTypeRE.FindStringSubmatch(machineType); m != nil {
		mb, err := strconv.Atoi(m[3])
		return mb, err == nil
	}
	return 0, false
}

// MachineVCPUs returns the vCPU count of a machine type (0, false if unknown).
func MachineVCPUs(machineType string) (int, bool) {
	if m := customTypeRE.FindStringSubmatch(machineType); m != nil {
		n, err := strconv.Atoi(m[2])
		return n, err == nil
	}
	if _, ok := machineMemoryMB[machineType]; !ok {
		return 0, false
	}
	switch machineType {
	case "e2-micro", "e2-small", "e2-medium":
		return 2, true // shared-core, 2 vCPUs bursting
	}
	i := strings.LastIndex(machineType, "-")
	n, err := strconv.Atoi(machineType[i+1:])
	return n, err == nil
}

// MachineTypes lists the machine types MachineMemoryMB knows (sorted).
func MachineTypes() []string {
	out := make([]string, 0, len(machineMemoryMB))
	for k := range machineMemoryMB {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
