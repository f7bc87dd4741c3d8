package infra

// Topology is the pure-Go view of everything infra declares: the Pulumi
// components render exactly this, and the stack validator (stacks/) checks
// services against it. Build it with Plan(cfg).
type Topology struct {
	Config   *Config
	Nodes    []PlannedNode // in config order
	Firewall []FirewallRule
	DNS      []DNSRecord
}

// FirewallRule is one GCP ingress rule, targeted by network tag.
type FirewallRule struct {
	Name         string // logical name; the GCP name is Config.ResourceName(Name)
	Description  string
	Allows       []Allow
	SourceRanges []string // CIDRs (0.0.0.0/0 for public)
	SourceTags   []string // network tags (between cluster nodes)
	TargetTags   []string
}

// Allow is one protocol entry of a firewall rule.
type Allow struct {
	Protocol string   // tcp, udp, esp
	Ports    []string // "2377", "40000-40100"; empty means all ports of the protocol
}

// DNSRecord is one Cloudflare record pointing at a node's static IP.
type DNSRecord struct {
	Name    string // FQDN, e.g. api.jbcalling.site or staging-api.jbcalling.site
	Sub     string // sub-name it was derived from ("" = apex, "api", "webrtc", ...)
	Type    string // A
	Node    string // logical node name whose external IP is the content
	Proxied bool   // Cloudflare proxy (HTTPS only); media names are never proxied
}
