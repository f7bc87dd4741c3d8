// Package infra declares the GCP side of the cluster: VPC, static IPs, VMs,
// firewall and Cloudflare DNS, plus the pure-Go topology those resources are
// rendered from, so that validators and tests can reason about the cluster
// without a cloud.
package infra

// Role is a node's Swarm role.
type Role string

const (
	RoleManager Role = "manager"
	RoleWorker  Role = "worker"
)

// Node is one VM of the cluster as written in stack config (`platform:nodes`).
type Node struct {
	// Name is the logical node name (translation01); the GCP resource name is
	// Config.ResourceName(Name) so that stacks never clash in one project.
	Name        string `json:"name"`
	Role        Role   `json:"role"`
	MachineType string `json:"machineType,omitempty"`
	DiskSizeGB  int    `json:"diskSizeGb,omitempty"`
	Image       string `json:"image,omitempty"`
	// Labels are Swarm node labels as "key=value" strings, exactly as
	// placement constraints read them (node.labels.key == value).
	Labels []string `json:"labels,omitempty"`
	// InternalIP is the node's static address inside platform:subnetCidr.
	// Default: host number i+2 of the subnet for the i-th node (10.148.0.2,
	// .3, .4 for the default subnet), so the manager's address is known before
	// anything is created and workers can be told where to join.
	InternalIP string `json:"internalIp,omitempty"`
}

// PortRange is an inclusive port range written "40000-40100" in config.
type PortRange struct {
	From int
	To   int
}

// Config is the whole typed cluster configuration of one Pulumi stack,
// loaded and validated once (LoadConfig) before any resource is registered.
type Config struct {
	// Stack is the Pulumi stack name (prod, staging, ci-1234); not a config key.
	Stack string

	Project          string   // platform:gcpProject
	Region           string   // platform:gcpRegion
	Zone             string   // platform:gcpZone
	Domain           string   // platform:domain
	CloudflareZoneID string   // platform:cloudflareZoneId
	DNSPrefix        string   // platform:dnsPrefix ("" for prod, "<stack>-" otherwise)
	Nodes            []Node   // platform:nodes
	EdgeNode         string   // platform:edgeNode: runs Traefik, gets 80/443 and the web names
	MediaNode        string   // platform:mediaNode: runs the SFU and coturn, gets 8443 and media ports
	AdminCIDRs       []string // platform:adminCidrs: SSH and Docker API sources
	SubnetCIDR       string   // platform:subnetCidr
	MediaPorts       PortRange
	SignallingPort   int    // platform:signallingPort
	MTU              int    // platform:mtu: VPC MTU and every overlay network's MTU
	SSHUser          string // platform:sshUser
	Protect          bool   // platform:protect: pulumi.Protect stateful resources (default: stack == prod)
}
