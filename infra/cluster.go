package infra

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pulumi/pulumi-cloudflare/sdk/v5/go/cloudflare"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/compute"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/projects"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

// Component type tokens.
const (
	TypeCluster  = "platform:infra:Cluster"
	TypeNetwork  = "platform:infra:Network"
	TypeNode     = "platform:infra:Node"
	TypeFirewall = "platform:infra:Firewall"
	TypeDNS      = "platform:infra:DNS"
)

// NodeServiceAccountRoles are the only project roles of the nodes' service
// account: shipping logs and metrics. Pulling images from Artifact Registry
// is granted on the repository itself (roles/artifactregistry.reader, by
// the stacks package), not project-wide.
var NodeServiceAccountRoles = []string{
	"roles/logging.logWriter",
	"roles/monitoring.metricWriter",
}

// ClusterArgs are the inputs of NewCluster.
type ClusterArgs struct {
	Topology       Topology
	StartupScripts map[string]string  // by logical node name; rendered by infra/bootstrap, put in metadata["startup-script"]
	SSHPublicKey   pulumi.StringInput // OpenSSH public key for Config.SSHUser, put in metadata["ssh-keys"]
}

// Cluster is the GCP + Cloudflare side of one stack: VPC and subnet, a
// service account, one VM per node with static internal and external
// addresses, the firewall and the DNS records. Depending on the Cluster
// (pulumi.DependsOn) waits for every child, firewall and DNS included.
type Cluster struct {
	pulumi.ResourceState
	Network             *compute.Network
	ServiceAccountEmail pulumi.StringOutput
	Nodes               map[string]*ClusterNode // by logical node name

	// Added for callers that need more than the above.
	Subnetwork         *compute.Subnetwork
	Firewall           map[string]*compute.Firewall  // by logical rule name (Topology.Firewall[].Name)
	DNS                map[string]*cloudflare.Record // by sub-name ("" = apex)
	GCPProvider        *gcp.Provider
	CloudflareProvider *cloudflare.Provider
	Topology           Topology
}

// ClusterNode is one VM of the cluster.
type ClusterNode struct {
	Instance   *compute.Instance
	InternalIP pulumi.StringOutput
	ExternalIP pulumi.StringOutput

	Component         *NodeComponent
	ExternalIPAddress *compute.Address // the static external address (protected on prod)
	InternalIPAddress *compute.Address // the static internal address (protected on prod)
}

// NodeComponent groups one node's addresses and VM.
type NodeComponent struct{ pulumi.ResourceState }

// NetworkComponent groups the VPC and its subnet.
type NetworkComponent struct{ pulumi.ResourceState }

// FirewallComponent groups the firewall rules.
type FirewallComponent struct{ pulumi.ResourceState }

// DNSComponent groups the Cloudflare records.
type DNSComponent struct{ pulumi.ResourceState }

// NewCluster declares the cluster of args.Topology. It validates the config
// again and checks the args before registering anything, so a bad config
// registers no resource at all.
func NewCluster(ctx *pulumi.Context, name string, args *ClusterArgs, opts ...pulumi.ResourceOption) (*Cluster, error) {
	if err := checkClusterArgs(args); err != nil {
		return nil, err
	}
	c := &Cluster{
		Nodes:    map[string]*ClusterNode{},
		Firewall: map[string]*compute.Firewall{},
		DNS:      map[string]*cloudflare.Record{},
		Topology: args.Topology,
	}
	d := &clusterDecl{ctx: ctx, name: name, args: args, cfg: args.Topology.Config, c: c}
	if err := DeclareComponent(ctx, TypeCluster, name, c, d.cluster, opts...); err != nil {
		return nil, err
	}
	return c, nil
}

func checkClusterArgs(args *ClusterArgs) error {
	if args == nil || args.Topology.Config == nil {
		return errors.New("infra.NewCluster: args.Topology has no Config (build it with Plan(cfg))")
	}
	top := args.Topology
	cfg := top.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	if len(top.Nodes) != len(cfg.Nodes) {
		return errors.New("infra.NewCluster: args.Topology was not built by Plan (nodes missing)")
	}
	for n := range args.StartupScripts {
		if _, ok := cfg.Node(n); !ok {
			return fmt.Errorf("infra.NewCluster: startup script for %q, which is not a node of %s:nodes", n, Namespace)
		}
	}
	for _, rec := range top.DNS {
		if _, ok := cfg.Node(rec.Node); !ok {
			return fmt.Errorf("infra.NewCluster: DNS record %s points at unknown node %q", rec.Name, rec.Node)
		}
	}
	return nil
}

// clusterDecl declares one Cluster's resources.
type clusterDecl struct {
	ctx  *pulumi.Context
	name string
	args *ClusterArgs
	cfg  *Config
	c    *Cluster
}

// gcp are the options of a GCP resource under parent: every one is
// pinned to the stack's project by the explicit provider.
func (d *clusterDecl) gcp(parent pulumi.ResourceOption, more ...pulumi.ResourceOption) []pulumi.ResourceOption {
	return append([]pulumi.ResourceOption{parent, pulumi.Provider(d.c.GCPProvider)}, more...)
}

func (d *clusterDecl) cluster(parent pulumi.ResourceOption) (pulumi.Map, error) {
	ctx, name, c := d.ctx, d.name, d.c
	if err := d.providers(parent); err != nil {
		return nil, err
	}
	if err := DeclareComponent(ctx, TypeNetwork, name+"-network", &NetworkComponent{}, d.network, parent); err != nil {
		return nil, err
	}
	bindings, err := d.serviceAccount(parent)
	if err != nil {
		return nil, err
	}
	var sshKeys pulumi.StringOutput
	if d.args.SSHPublicKey != nil {
		user := d.cfg.SSHUser
		sshKeys = d.args.SSHPublicKey.ToStringOutput().ApplyT(func(k string) string {
			return user + ":" + strings.TrimSpace(k)
		}).(pulumi.StringOutput)
	}
	for _, pn := range c.Topology.Nodes {
		cn, err := d.node(pn, sshKeys, bindings, parent)
		if err != nil {
			return nil, err
		}
		c.Nodes[pn.Name] = cn
	}
	if err := DeclareComponent(ctx, TypeFirewall, name+"-firewall", &FirewallComponent{}, d.firewall, parent); err != nil {
		return nil, err
	}
	if err := DeclareComponent(ctx, TypeDNS, name+"-dns", &DNSComponent{}, d.dns, parent); err != nil {
		return nil, err
	}
	return pulumi.Map{
		"network":             c.Network.SelfLink,
		"serviceAccountEmail": c.ServiceAccountEmail,
		"nodes":               c.NodesOutput(),
		"urls":                pulumi.ToStringMap(c.Topology.PublicURLs()),
	}, nil
}

// providers: explicit ones, so that nothing depends on ambient gcp:* /
// cloudflare:* stack config or gcloud defaults, and every resource is
// pinned to the stack's project.
func (d *clusterDecl) providers(parent pulumi.ResourceOption) error {
	var err error
	d.c.GCPProvider, err = gcp.NewProvider(d.ctx, d.name+"-gcp", &gcp.ProviderArgs{
		Project: pulumi.String(d.cfg.Project),
		Region:  pulumi.String(d.cfg.Region),
		Zone:    pulumi.String(d.cfg.Zone),
	}, parent)
	if err != nil {
		return err
	}
	cfArgs := &cloudflare.ProviderArgs{}
	if _, ok := d.ctx.GetConfig("cloudflare:apiToken"); ok {
		// Read as a secret: it stays encrypted in state and never shows in logs.
		cfArgs.ApiToken = config.GetSecret(d.ctx, "cloudflare:apiToken")
	} // else the provider reads CLOUDFLARE_API_TOKEN from the environment.
	d.c.CloudflareProvider, err = cloudflare.NewProvider(d.ctx, d.name+"-cloudflare", cfArgs, parent)
	return err
}

func (d *clusterDecl) network(parent pulumi.ResourceOption) (pulumi.Map, error) {
	cfg, c := d.cfg, d.c
	var err error
	c.Network, err = compute.NewNetwork(d.ctx, d.name+"-vpc", &compute.NetworkArgs{
		Name:                  pulumi.String(cfg.ResourceName("vpc")),
		Description:           pulumi.String("Swarm cluster VPC of stack " + cfg.Stack),
		AutoCreateSubnetworks: pulumi.Bool(false),
		RoutingMode:           pulumi.String("REGIONAL"),
		Mtu:                   pulumi.Int(cfg.MTU),
	}, d.gcp(parent)...)
	if err != nil {
		return nil, err
	}
	c.Subnetwork, err = compute.NewSubnetwork(d.ctx, d.name+"-subnet", &compute.SubnetworkArgs{
		Name:                  pulumi.String(cfg.ResourceName("subnet")),
		Network:               c.Network.ID(),
		Region:                pulumi.String(cfg.Region),
		IpCidrRange:           pulumi.String(cfg.SubnetCIDR),
		PrivateIpGoogleAccess: pulumi.Bool(true),
	}, d.gcp(parent)...)
	if err != nil {
		return nil, err
	}
	return pulumi.Map{
		"network":    c.Network.SelfLink,
		"subnetwork": c.Subnetwork.SelfLink,
		"mtu":        c.Network.Mtu,
	}, nil
}

// serviceAccount is the nodes' account, for logs and metrics only; it
// returns the account's role bindings, which the VMs wait for.
func (d *clusterDecl) serviceAccount(parent pulumi.ResourceOption) ([]pulumi.Resource, error) {
	sa, err := serviceaccount.NewAccount(d.ctx, d.name+"-nodes-sa", &serviceaccount.AccountArgs{
		AccountId:   pulumi.String(d.cfg.ServiceAccountID()),
		DisplayName: pulumi.String("Swarm nodes of stack " + d.cfg.Stack),
	}, d.gcp(parent)...)
	if err != nil {
		return nil, err
	}
	d.c.ServiceAccountEmail = sa.Email
	var bindings []pulumi.Resource
	for _, role := range NodeServiceAccountRoles {
		short := strings.TrimPrefix(role, "roles/")
		short = strings.ReplaceAll(short, ".", "-")
		b, err := projects.NewIAMMember(d.ctx, d.name+"-nodes-sa-"+short, &projects.IAMMemberArgs{
			Project: pulumi.String(d.cfg.Project),
			Role:    pulumi.String(role),
			Member:  sa.Member,
		}, d.gcp(parent)...)
		if err != nil {
			return nil, err
		}
		bindings = append(bindings, b)
	}
	return bindings, nil
}

func (d *clusterDecl) firewall(parent pulumi.ResourceOption) (pulumi.Map, error) {
	out := pulumi.Map{}
	for _, r := range d.c.Topology.Firewall {
		allows := compute.FirewallAllowArray{}
		for _, a := range r.Allows {
			allows = append(allows, compute.FirewallAllowArgs{
				Protocol: pulumi.String(a.Protocol),
				Ports:    pulumi.ToStringArray(a.Ports),
			})
		}
		fa := &compute.FirewallArgs{
			Name:        pulumi.String(d.cfg.ResourceName(r.Name)),
			Description: pulumi.String(r.Description),
			Network:     d.c.Network.SelfLink,
			Direction:   pulumi.String("INGRESS"),
			Priority:    pulumi.Int(1000),
			Allows:      allows,
			TargetTags:  pulumi.ToStringArray(r.TargetTags),
		}
		if len(r.SourceRanges) > 0 {
			fa.SourceRanges = pulumi.ToStringArray(r.SourceRanges)
		}
		if len(r.SourceTags) > 0 {
			fa.SourceTags = pulumi.ToStringArray(r.SourceTags)
		}
		fw, err := compute.NewFirewall(d.ctx, d.name+"-"+r.Name, fa, d.gcp(parent)...)
		if err != nil {
			return nil, err
		}
		d.c.Firewall[r.Name] = fw
		out[r.Name] = fw.Name
	}
	return out, nil
}

func (d *clusterDecl) dns(parent pulumi.ResourceOption) (pulumi.Map, error) {
	out := pulumi.Map{}
	for _, rec := range d.c.Topology.DNS {
		sub := rec.Sub
		if sub == "" {
			sub = "apex"
		}
		r, err := cloudflare.NewRecord(d.ctx, d.name+"-dns-"+sub, &cloudflare.RecordArgs{
			ZoneId:  pulumi.String(d.cfg.CloudflareZoneID),
			Name:    pulumi.String(rec.Name),
			Type:    pulumi.String(rec.Type),
			Content: d.c.Nodes[rec.Node].ExternalIP, // never the deprecated `value`
			Proxied: pulumi.Bool(rec.Proxied),
			Ttl:     pulumi.Int(1), // automatic (required for proxied records)
			Comment: pulumi.String(fmt.Sprintf("pulumi stack %s, node %s", d.cfg.Stack, rec.Node)),
		}, parent, pulumi.Provider(d.c.CloudflareProvider))
		if err != nil {
			return nil, err
		}
		d.c.DNS[rec.Sub] = r
		out[sub] = r.Hostname
	}
	return out, nil
}

// node declares one VM with its two static addresses.
func (d *clusterDecl) node(pn PlannedNode, sshKeys pulumi.StringOutput, bindings []pulumi.Resource, clusterParent pulumi.ResourceOption) (*ClusterNode, error) {
	cn := &ClusterNode{Component: &NodeComponent{}}
	err := DeclareComponent(d.ctx, TypeNode, d.name+"-"+pn.Name, cn.Component, func(parent pulumi.ResourceOption) (pulumi.Map, error) {
		if err := d.addresses(cn, pn, parent); err != nil {
			return nil, err
		}
		vm, err := compute.NewInstance(d.ctx, d.name+"-"+pn.Name, d.instanceArgs(pn, cn, sshKeys), d.gcp(parent, pulumi.DependsOn(bindings))...)
		if err != nil {
			return nil, err
		}
		cn.Instance = vm
		return pulumi.Map{
			"instance":   vm.Name,
			"internalIp": cn.InternalIP,
			"externalIp": cn.ExternalIP,
		}, nil
	}, clusterParent)
	return cn, err
}

// addresses: the static ones are the stateful part (DNS and the swarm's
// join address point at them), protected on prod (platform:protect).
func (d *clusterDecl) addresses(cn *ClusterNode, pn PlannedNode, parent pulumi.ResourceOption) error {
	cfg := d.cfg
	labels := pulumi.ToStringMap(cfg.GCPLabels(pn.Node))
	ext, err := compute.NewAddress(d.ctx, d.name+"-"+pn.Name+"-ip", &compute.AddressArgs{
		Name:        pulumi.String(cfg.ResourceName(pn.Name + "-ip")),
		Description: pulumi.String("external address of " + pn.ResourceName),
		Region:      pulumi.String(cfg.Region),
		AddressType: pulumi.String("EXTERNAL"),
		NetworkTier: pulumi.String("PREMIUM"),
		Labels:      labels,
	}, d.gcp(parent, pulumi.Protect(cfg.Protect))...)
	if err != nil {
		return err
	}
	in, err := compute.NewAddress(d.ctx, d.name+"-"+pn.Name+"-internal-ip", &compute.AddressArgs{
		Name:        pulumi.String(cfg.ResourceName(pn.Name + "-internal-ip")),
		Description: pulumi.String("internal address of " + pn.ResourceName),
		Region:      pulumi.String(cfg.Region),
		AddressType: pulumi.String("INTERNAL"),
		Subnetwork:  d.c.Subnetwork.ID(),
		Address:     pulumi.String(pn.InternalIP),
		Labels:      labels,
	}, d.gcp(parent, pulumi.Protect(cfg.Protect))...)
	if err != nil {
		return err
	}
	cn.ExternalIPAddress, cn.InternalIPAddress = ext, in
	cn.ExternalIP, cn.InternalIP = ext.Address, in.Address
	return nil
}

func (d *clusterDecl) instanceArgs(pn PlannedNode, cn *ClusterNode, sshKeys pulumi.StringOutput) *compute.InstanceArgs {
	cfg := d.cfg
	labels := pulumi.ToStringMap(cfg.GCPLabels(pn.Node))
	metadata := pulumi.StringMap{
		// Only the keys below may log in; project-wide keys are ignored.
		"block-project-ssh-keys": pulumi.String("TRUE"),
		"enable-oslogin":         pulumi.String("FALSE"),
	}
	if s, ok := d.args.StartupScripts[pn.Name]; ok {
		// metadata["startup-script"], not metadataStartupScript: changing the
		// latter recreates the VM.
		metadata["startup-script"] = pulumi.String(s)
	}
	if d.args.SSHPublicKey != nil {
		metadata["ssh-keys"] = sshKeys
	}
	return &compute.InstanceArgs{
		Name:        pulumi.String(pn.ResourceName),
		Description: pulumi.String(fmt.Sprintf("swarm %s %s of stack %s", pn.Role, pn.Name, cfg.Stack)),
		MachineType: pulumi.String(pn.MachineType),
		Zone:        pulumi.String(cfg.Zone),
		Tags:        pulumi.ToStringArray(pn.Tags),
		Labels:      labels,
		Metadata:    metadata,
		BootDisk: compute.InstanceBootDiskArgs{
			AutoDelete: pulumi.Bool(true),
			InitializeParams: compute.InstanceBootDiskInitializeParamsArgs{
				Image:  pulumi.String(pn.Image),
				Size:   pulumi.Int(pn.DiskSizeGB),
				Type:   pulumi.String("pd-balanced"),
				Labels: labels,
			},
		},
		NetworkInterfaces: compute.InstanceNetworkInterfaceArray{
			compute.InstanceNetworkInterfaceArgs{
				Subnetwork: d.c.Subnetwork.ID(),
				NetworkIp:  cn.InternalIP,
				AccessConfigs: compute.InstanceNetworkInterfaceAccessConfigArray{
					compute.InstanceNetworkInterfaceAccessConfigArgs{
						NatIp:       cn.ExternalIP,
						NetworkTier: pulumi.String("PREMIUM"),
					},
				},
			},
		},
		ServiceAccount: compute.InstanceServiceAccountArgs{
			Email: d.c.ServiceAccountEmail,
			// Access is governed by the account's IAM roles, as Google recommends.
			Scopes: pulumi.ToStringArray([]string{"https://www.googleapis.com/auth/cloud-platform"}),
		},
		ShieldedInstanceConfig: compute.InstanceShieldedInstanceConfigArgs{
			EnableSecureBoot:          pulumi.Bool(true),
			EnableVtpm:                pulumi.Bool(true),
			EnableIntegrityMonitoring: pulumi.Bool(true),
		},
		// A machine type change stops and restarts the VM instead of failing.
		AllowStoppingForUpdate: pulumi.Bool(true),
	}
}

// NodesOutput is {node: {internalIp, externalIp, role, instance}} for stack outputs.
func (c *Cluster) NodesOutput() pulumi.Map {
	out := pulumi.Map{}
	for name, n := range c.Nodes {
		pn, _ := c.Topology.Node(name)
		out[name] = pulumi.Map{
			"internalIp": n.InternalIP,
			"externalIp": n.ExternalIP,
			"role":       pulumi.String(string(pn.Role)),
			"instance":   pulumi.String(pn.ResourceName),
		}
	}
	return out
}

// Export sets the stack outputs infra owns: "nodes" (name → internal and
// external IP, role, GCP instance name) and "urls" (public URLs by name).
func (c *Cluster) Export(ctx *pulumi.Context) {
	ctx.Export("nodes", c.NodesOutput())
	ctx.Export("urls", pulumi.ToStringMap(c.Topology.PublicURLs()))
}

// NodeNames returns the logical node names in config order.
func (c *Cluster) NodeNames() []string {
	var out []string
	for _, n := range c.Topology.Nodes {
		out = append(out, n.Name)
	}
	if len(out) == 0 {
		for n := range c.Nodes {
			out = append(out, n)
		}
		sort.Strings(out)
	}
	return out
}
