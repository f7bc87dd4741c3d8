package infra

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Ports the cluster itself uses; the media range must not swallow them.
const (
	PortSSH          = 22
	PortDockerTLS    = 2376 // mutual-TLS Docker API on the manager (bootstrap)
	PortDockerPlain  = 2375 // never opened
	PortSwarmManager = 2377
	PortSwarmGossip  = 7946
	PortVXLAN        = 4789
)

// CloudflareHTTPSPorts are the HTTPS ports Cloudflare's proxy forwards; the
// proxied webrtc name only works when the signalling port is one of them.
var CloudflareHTTPSPorts = []int{443, 2053, 2083, 2087, 2096, 8443}

var (
	labelKeyRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
	sshUserRE   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	projectRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	regionRE    = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	dnsLabelRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	dnsPrefixRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?-$`)
	zoneIDRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Validate checks the whole configuration and returns every problem found,
// one per line, each naming its key (platform:nodes[1].labels[0]: ...).
func (c *Config) Validate() error {
	v := &configCheck{c: c}
	v.gcp()
	v.dns()
	// Stack-derived GCP names.
	for _, n := range []string{c.ResourceName("vpc"), c.ClusterTag(), c.ManagerTag()} {
		if !gcpNameRE.MatchString(n) {
			v.errs = append(v.errs, fmt.Errorf("stack %q: GCP name %q is not valid (lowercase, at most 63 chars); use a shorter stack name", c.Stack, n))
			break
		}
	}
	subnet, subnetOK := v.subnet()
	v.nodes(subnet, subnetOK)
	v.adminCIDRs()
	v.ports()
	if c.MTU < 1300 || c.MTU > 8896 {
		v.bad("mtu", "%d is outside 1300-8896 (GCP VPC limits)", c.MTU)
	}
	if !sshUserRE.MatchString(c.SSHUser) {
		v.bad("sshUser", "%q is not a Linux user name", c.SSHUser)
	}
	return errors.Join(v.errs...)
}

// configCheck collects Validate's problems.
type configCheck struct {
	c    *Config
	errs []error
}

func (v *configCheck) bad(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s:%s: %s", Namespace, key, fmt.Sprintf(format, args...)))
}

func (v *configCheck) gcp() {
	c := v.c
	switch {
	case c.Project == "":
		v.bad("gcpProject", "required: the GCP project id (or set gcp:project)")
	case !projectRE.MatchString(c.Project):
		v.bad("gcpProject", "%q is not a GCP project id (6-30 lowercase letters, digits, hyphens)", c.Project)
	}
	if !regionRE.MatchString(c.Region) {
		v.bad("gcpRegion", "%q is not a GCP region like asia-southeast1", c.Region)
	}
	if !strings.HasPrefix(c.Zone, c.Region+"-") || len(c.Zone) != len(c.Region)+2 {
		v.bad("gcpZone", "%q is not a zone of region %s (like %s-a)", c.Zone, c.Region, c.Region)
	}
}

// dns: the domain, its Cloudflare zone and the stack's hostnames.
func (v *configCheck) dns() {
	c := v.c
	domainOK := true
	if c.Domain == "" {
		v.bad("domain", "must not be empty")
		domainOK = false
	} else if !validDomain(c.Domain) {
		v.bad("domain", "%q is not a DNS name like example.com", c.Domain)
		domainOK = false
	}
	switch {
	case c.CloudflareZoneID == "":
		v.bad("cloudflareZoneId", "required: the Cloudflare zone id of %s (dashboard > Overview > API)", c.Domain)
	case !zoneIDRE.MatchString(c.CloudflareZoneID):
		v.bad("cloudflareZoneId", "%q is not a Cloudflare zone id", c.CloudflareZoneID)
	}
	if c.DNSPrefix == "" && c.Stack != "prod" {
		v.bad("dnsPrefix", "empty: stack %q would take prod's hostnames (%s, api.%s); only the prod stack has no prefix",
			c.Stack, c.Domain, c.Domain)
	} else if c.DNSPrefix != "" && !dnsPrefixRE.MatchString(c.DNSPrefix) {
		v.bad("dnsPrefix", "%q must be lowercase letters, digits and hyphens ending in '-' (like staging-)", c.DNSPrefix)
	}
	if !domainOK {
		return
	}
	for _, sub := range append([]string{""}, AllSubs...) {
		h := c.Hostname(sub)
		if label, _, _ := strings.Cut(h, "."); !dnsLabelRE.MatchString(label) {
			v.bad("dnsPrefix", "hostname %q: %q is not a valid DNS label", h, label)
			return
		}
	}
}

// subnet is the VPC's subnet, and whether it is one the nodes' addresses
// can be checked against.
func (v *configCheck) subnet() (netip.Prefix, bool) {
	c := v.c
	subnet, err := netip.ParsePrefix(c.SubnetCIDR)
	switch {
	case err != nil:
		v.bad("subnetCidr", "%q is not a CIDR: %v", c.SubnetCIDR, err)
	case !subnet.Addr().Is4() || subnet.Masked() != subnet:
		v.bad("subnetCidr", "%q is not an IPv4 network address (did you mean %s?)", c.SubnetCIDR, subnet.Masked())
	case !subnet.Addr().IsPrivate() || subnet.Bits() < 8 || subnet.Bits() > 29:
		v.bad("subnetCidr", "%q must be a private (RFC 1918) range between /8 and /29", c.SubnetCIDR)
	default:
		return subnet, true
	}
	return subnet, false
}

func (v *configCheck) nodes(subnet netip.Prefix, subnetOK bool) {
	c := v.c
	if len(c.Nodes) == 0 {
		v.bad("nodes", "no nodes")
	}
	seen := map[string]int{}
	seenIP := map[string]string{}
	managers := 0
	for i, n := range c.Nodes {
		key := fmt.Sprintf("nodes[%d]", i)
		switch {
		case n.Name == "":
			v.bad(key+".name", "must not be empty")
		case !gcpNameRE.MatchString(n.Name):
			v.bad(key+".name", "%q is not a valid GCP/DNS name (lowercase letters, digits, hyphens, starting with a letter)", n.Name)
		case !gcpNameRE.MatchString(c.ResourceName(n.Name)):
			v.bad(key+".name", "%q: GCP name %q is longer than 63 chars", n.Name, c.ResourceName(n.Name))
		}
		if j, dup := seen[n.Name]; dup && n.Name != "" {
			v.bad(key+".name", "%q is also the name of nodes[%d]; node names must be unique", n.Name, j)
		} else {
			seen[n.Name] = i
		}
		switch n.Role {
		case RoleManager:
			managers++
		case RoleWorker:
		default:
			v.bad(key+".role", "%q is not manager or worker", n.Role)
		}
		if _, ok := MachineMemoryMB(n.MachineType); !ok && !gcpNameRE.MatchString(n.MachineType) {
			v.bad(key+".machineType", "%q is not a GCP machine type", n.MachineType)
		}
		if n.DiskSizeGB < 10 || n.DiskSizeGB > 65536 {
			v.bad(key+".diskSizeGb", "%d is outside 10-65536", n.DiskSizeGB)
		}
		if strings.TrimSpace(n.Image) == "" {
			v.bad(key+".image", "must not be empty")
		}
		v.labels(key, n.Labels)
		if subnetOK {
			v.internalIP(i, n, subnet, seenIP)
		}
	}
	if len(c.Nodes) > 0 && managers != 1 {
		v.bad("nodes", "%d managers: exactly one node must have role manager (this bootstrap initialises a single-manager swarm)", managers)
	}
	if _, ok := c.Node(c.EdgeNode); !ok {
		v.bad("edgeNode", "%q is not one of the declared nodes %v", c.EdgeNode, c.nodeNames())
	}
	if _, ok := c.Node(c.MediaNode); !ok {
		v.bad("mediaNode", "%q is not one of the declared nodes %v", c.MediaNode, c.nodeNames())
	}
}

func (v *configCheck) labels(key string, labels []string) {
	labelKeys := map[string]bool{}
	for j, l := range labels {
		lk := fmt.Sprintf("%s.labels[%d]", key, j)
		k, val, ok := strings.Cut(l, "=")
		switch {
		case !ok:
			v.bad(lk, "%q is not key=value", l)
		case !labelKeyRE.MatchString(k):
			v.bad(lk, "%q is not key=value: key %q must be letters, digits, '.', '-', '_'", l, k)
		case strings.ContainsAny(val, " \t\n\"'"):
			v.bad(lk, "%q: value %q must not contain spaces or quotes", l, val)
		case labelKeys[k]:
			v.bad(lk, "%q: label %q is set twice", l, k)
		}
		labelKeys[k] = true
	}
}

// internalIP: node i's address is a usable one of the subnet, and no
// other node's (seenIP: address → node).
func (v *configCheck) internalIP(i int, n Node, subnet netip.Prefix, seenIP map[string]string) {
	ipStr := v.c.NodeInternalIP(n.Name)
	ipKey := fmt.Sprintf("nodes[%d].internalIp", i)
	if n.InternalIP == "" {
		ipKey = fmt.Sprintf("subnetCidr (default address of nodes[%d])", i)
	}
	ip, err := netip.ParseAddr(ipStr)
	switch {
	case err != nil:
		v.bad(ipKey, "%q is not an IPv4 address", ipStr)
	case !subnet.Contains(ip) || ip == subnet.Addr() || ip == subnet.Addr().Next() || !subnet.Contains(ip.Next().Next()):
		v.bad(ipKey, "%s is not a usable address of %s (GCP reserves the first two and last two)", ip, subnet)
	default:
		if other, dup := seenIP[ip.String()]; dup {
			v.bad(ipKey, "%s is also the address of %s", ip, other)
		}
		seenIP[ip.String()] = n.Name
	}
}

func (v *configCheck) adminCIDRs() {
	if len(v.c.AdminCIDRs) == 0 {
		v.bad("adminCidrs", "required: the CIDRs allowed to reach SSH (22) and the Docker API (2376), e.g. [\"203.0.113.7/32\"]")
	}
	for i, s := range v.c.AdminCIDRs {
		key := fmt.Sprintf("adminCidrs[%d]", i)
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			v.bad(key, "%q is not a CIDR like 203.0.113.7/32", s)
		case !p.Addr().Is4():
			v.bad(key, "%q: only IPv4 ranges are supported", s)
		case p.Masked() != p:
			v.bad(key, "%q is not a network address (did you mean %s?)", s, p.Masked())
		case p.Bits() < 8:
			v.bad(key, "%q would open SSH and the Docker API to a large part of the internet (at least /8)", s)
		}
	}
}

// ports: the media range and the signalling port.
func (v *configCheck) ports() {
	r := v.c.MediaPorts
	switch {
	case r.From > r.To:
		v.bad("mediaPortRange", "%s is reversed", r)
	case r.From < 1024 || r.To > 65535:
		v.bad("mediaPortRange", "%s is outside 1024-65535", r)
	default:
		for _, p := range []int{PortDockerPlain, PortDockerTLS, PortSwarmManager, PortSwarmGossip, PortVXLAN} {
			if r.Contains(p) {
				v.bad("mediaPortRange", "%s contains %d, a Docker/Swarm port", r, p)
			}
		}
	}
	sp := v.c.SignallingPort
	switch {
	case sp < 1024 || sp > 65535:
		v.bad("signallingPort", "%d is outside 1024-65535", sp)
	case r.Contains(sp):
		v.bad("signallingPort", "%d is inside the media port range %s", sp, r)
	case !slices.Contains(CloudflareHTTPSPorts, sp):
		// 443 is also proxied but below 1024 and the edge proxy's port.
		v.bad("signallingPort", "%d is not a port Cloudflare proxies over HTTPS (%v); the webrtc hostname is proxied",
			sp, CloudflareHTTPSPorts[1:])
	}
}

func (c *Config) nodeNames() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Name)
	}
	return out
}

func validDomain(d string) bool {
	labels := strings.Split(d, ".")
	if len(labels) < 2 || len(d) > 253 {
		return false
	}
	for _, l := range labels {
		if !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}
