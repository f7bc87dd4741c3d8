package infra

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
)

// Sub-names of the public hostnames (Config.Hostname(sub)).
const (
	SubApex    = ""
	SubWWW     = "www"
	SubAPI     = "api"
	SubGrafana = "grafana"
	SubWebRTC  = "webrtc" // SFU signalling (WSS on the signalling port), proxied
	SubMedia   = "media"  // ICE host for UDP/TCP media, DNS-only
)

// AllSubs lists every non-apex sub-name the cluster publishes.
var AllSubs = []string{SubWWW, SubAPI, SubGrafana, SubWebRTC, SubMedia}

// Anywhere is the source range of public rules.
const Anywhere = "0.0.0.0/0"

// PlannedNode is a node as it will be created: names, tags, labels, address.
type PlannedNode struct {
	Node
	ResourceName string            // GCP instance name (<stack>-<name>)
	Tags         []string          // GCP network tags
	InternalIP   string            // static internal address
	SwarmLabels  map[string]string // labels the bootstrap puts on the Swarm node
	MemoryMB     int               // from the machine type (0 if unknown)
}

// Plan derives everything infra will declare from a validated config: the
// nodes, least-privilege firewall rules and DNS records, as data. NewCluster
// renders exactly this; tests and the stack validator read it.
func Plan(cfg *Config) Topology {
	t := Topology{Config: cfg}
	for _, n := range cfg.Nodes {
		mem, _ := MachineMemoryMB(n.MachineType)
		t.Nodes = append(t.Nodes, PlannedNode{
			Node:         n,
			ResourceName: cfg.ResourceName(n.Name),
			Tags:         cfg.NodeTags(n),
			InternalIP:   cfg.NodeInternalIP(n.Name),
			SwarmLabels:  cfg.SwarmLabels(n),
			MemoryMB:     mem,
		})
	}

	port := strconv.Itoa
	media := cfg.MediaPorts.String()
	admin := append([]string(nil), cfg.AdminCIDRs...)
	sort.Strings(admin)
	t.Firewall = []FirewallRule{
		{
			Name:         "allow-web",
			Description:  "HTTP/HTTPS from Cloudflare's proxies (only) to the edge proxy",
			Allows:       []Allow{{Protocol: "tcp", Ports: []string{"80", "443"}}},
			SourceRanges: append([]string(nil), CloudflareIPv4...),
			TargetTags:   []string{cfg.EdgeTag()},
		},
		{
			Name:         "allow-signalling",
			Description:  "SFU WebSocket signalling (TLS) from Cloudflare's proxies (only) to the media node",
			Allows:       []Allow{{Protocol: "tcp", Ports: []string{port(cfg.SignallingPort)}}},
			SourceRanges: append([]string(nil), CloudflareIPv4...),
			TargetTags:   []string{cfg.MediaTag()},
		},
		{
			Name:        "allow-media",
			Description: "WebRTC media (ICE UDP and ICE-TCP) from anywhere to the media node",
			Allows: []Allow{
				{Protocol: "udp", Ports: []string{media}},
				{Protocol: "tcp", Ports: []string{media}},
			},
			SourceRanges: []string{Anywhere},
			TargetTags:   []string{cfg.MediaTag()},
		},
		{
			Name:        "allow-swarm-manager",
			Description: "Swarm cluster management (2377/tcp) from cluster nodes to the manager",
			Allows:      []Allow{{Protocol: "tcp", Ports: []string{port(PortSwarmManager)}}},
			SourceTags:  []string{cfg.ClusterTag()},
			TargetTags:  []string{cfg.ManagerTag()},
		},
		{
			Name:        "allow-swarm-nodes",
			Description: "Swarm gossip (7946/tcp+udp) and VXLAN overlay data (4789/udp) between cluster nodes",
			Allows: []Allow{
				{Protocol: "tcp", Ports: []string{port(PortSwarmGossip)}},
				{Protocol: "udp", Ports: []string{port(PortSwarmGossip), port(PortVXLAN)}},
			},
			SourceTags: []string{cfg.ClusterTag()},
			TargetTags: []string{cfg.ClusterTag()},
		},
		{
			Name:         "allow-admin-ssh",
			Description:  "SSH from the admin ranges to every node (bootstrap remote commands)",
			Allows:       []Allow{{Protocol: "tcp", Ports: []string{port(PortSSH)}}},
			SourceRanges: admin,
			TargetTags:   []string{cfg.ClusterTag()},
		},
		{
			Name:         "allow-admin-docker",
			Description:  "Mutual-TLS Docker API (2376/tcp) from the admin ranges to the manager",
			Allows:       []Allow{{Protocol: "tcp", Ports: []string{port(PortDockerTLS)}}},
			SourceRanges: admin,
			TargetTags:   []string{cfg.ManagerTag()},
		},
	}

	rec := func(sub, node string, proxied bool) DNSRecord {
		return DNSRecord{Name: cfg.Hostname(sub), Sub: sub, Type: "A", Node: node, Proxied: proxied}
	}
	t.DNS = []DNSRecord{
		rec(SubApex, cfg.EdgeNode, true),
		rec(SubWWW, cfg.EdgeNode, true),
		rec(SubAPI, cfg.EdgeNode, true),
		rec(SubGrafana, cfg.EdgeNode, true),
		// Proxied: Cloudflare forwards WebSockets on its HTTPS ports (8443);
		// the SFU terminates TLS with a Cloudflare origin certificate.
		rec(SubWebRTC, cfg.MediaNode, true),
		// DNS-only: ICE UDP/TCP must reach the node itself.
		rec(SubMedia, cfg.MediaNode, false),
	}
	return t
}

// Record returns the DNS record of a sub-name ("" = apex).
func (t Topology) Record(sub string) (DNSRecord, bool) {
	for _, r := range t.DNS {
		if r.Sub == sub {
			return r, true
		}
	}
	return DNSRecord{}, false
}

// Rule returns the firewall rule with the logical name.
func (t Topology) Rule(name string) (FirewallRule, bool) {
	for _, r := range t.Firewall {
		if r.Name == name {
			return r, true
		}
	}
	return FirewallRule{}, false
}

// Node returns the planned node with the logical name.
func (t Topology) Node(name string) (PlannedNode, bool) {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return PlannedNode{}, false
}

// PublicURLs maps a sub-name ("apex", "api", "webrtc", ...) to its public URL;
// media is a bare hostname (ICE, not HTTP).
func (t Topology) PublicURLs() map[string]string {
	c := t.Config
	return map[string]string{
		"apex":    c.URL(SubApex),
		"www":     c.URL(SubWWW),
		"api":     c.URL(SubAPI),
		"grafana": c.URL(SubGrafana),
		"webrtc":  c.SignallingURL(),
		"media":   c.Hostname(SubMedia),
	}
}

// Opens reports whether any rule admits protocol/port from every address
// of the source range to some node.
func (t Topology) Opens(source, protocol string, port int) bool {
	for _, r := range t.Firewall {
		if r.Admits(Source{CIDR: source}, nil, protocol, port) {
			return true
		}
	}
	return false
}

// Source is where traffic comes from: every address of a CIDR, or a node
// (its network tags and internal address).
type Source struct {
	CIDR string
	Tags []string
	IP   string
}

// Admits reports whether the rule lets protocol/port in from src to a
// node with dstTags (nil: any node the rule targets). The one matcher of
// the declared firewall, for infra's tests and the stack's validator.
func (r FirewallRule) Admits(src Source, dstTags []string, protocol string, port int) bool {
	if dstTags != nil && len(r.TargetTags) > 0 && !slices.ContainsFunc(r.TargetTags, func(t string) bool { return slices.Contains(dstTags, t) }) {
		return false
	}
	from := slices.ContainsFunc(r.SourceTags, func(t string) bool { return slices.Contains(src.Tags, t) })
	for _, s := range r.SourceRanges {
		from = from || covers(s, src)
	}
	if !from {
		return false
	}
	for _, a := range r.Allows {
		if (a.Protocol == protocol || a.Protocol == "all") && portsContain(a.Ports, port) {
			return true
		}
	}
	return false
}

// covers reports whether the range cidr holds src: its whole CIDR, or
// its address.
func covers(cidr string, src Source) bool {
	r, err := netip.ParsePrefix(cidr)
	if err != nil {
		return false
	}
	if src.CIDR != "" {
		p, err := netip.ParsePrefix(src.CIDR)
		return err == nil && p.Bits() >= r.Bits() && r.Contains(p.Masked().Addr())
	}
	ip, err := netip.ParseAddr(src.IP)
	return err == nil && r.Contains(ip)
}

// portsContain reports whether GCP port specs ("80", "40000-40100"; empty =
// all ports) cover port.
func portsContain(specs []string, port int) bool {
	if len(specs) == 0 {
		return true
	}
	for _, s := range specs {
		if m := portRangeRE.FindStringSubmatch(s); m != nil {
			from, _ := strconv.Atoi(m[1])
			to, _ := strconv.Atoi(m[2])
			if port >= from && port <= to {
				return true
			}
		}
		if p, err := strconv.Atoi(s); err == nil && p == port {
			return true
		}
	}
	return false
}
