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
	if args == nil || args.Topology.Config == nil {
		return nil, errors.New("infra.NewCluster: args.Topology has no Config (build it with Plan(cfg))")
	}
	top := args.Topology
	cfg := top.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(top.Nodes) != len(cfg.Nodes) {
		return nil, errors.New("infra.NewCluster: args.Topology was not built by Plan (nodes missing)")
	}
	for n := range args.StartupScripts {
		if _, ok := cfg.Node(n); !ok {
			return nil, fmt.Errorf("infra.NewCluster: startup script for %q, which is not a node of %s:nodes", n, Namespace)
		}
	}

	c := &Cluster{
		Nodes:    map[string]*ClusterNode{},
		Firewall: map[string]*compute.Firewall{},
		DNS:      map[string]*cloudflare.Record{},
		Topology: top,
	}
	if err := ctx.RegisterComponentResource(TypeCluster, name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)

	// Explicit providers: nothing depends on ambient gcp:* / cloudflare:*
	// stack config or gcloud defaults, and every resource is pinned to the
	// stack's project.
	var err error
	c.GCPProvider, err = gcp.NewProvider(ctx, name+"-gcp", &gcp.ProviderArgs{
		Project: pulumi.String(cfg.Project),
		Region:  pulumi.String(cfg.Region),
		Zone:    pulumi.String(cfg.Zone),
	}, parent)
	if err != nil {
		return nil, err
	}
	cfArgs := &cloudflare.ProviderArgs{}
	if _, ok := ctx.GetConfig("cloudflare:apiToken"); ok {
		// Read as a secret: it stays encrypted in state and never shows in logs.
		cfArgs.ApiToken = config.GetSecret(ctx, "cloudflare:apiToken")
	} // else the provider reads CLOUDFLARE_API_TOKEN from the environment.
	c.CloudflareProvider, err = cloudflare.NewProvider(ctx, name+"-cloudflare", cfArgs, parent)
	if err != nil {
		return nil, err
	}
	gcpOpts := func(p pulumi.Resource, more ...pulumi.ResourceOption) []pulumi.ResourceOption {
		return append([]pulumi.ResourceOption{pulumi.Parent(p), pulumi.Provider(c.GCPProvider)}, more...)
	}

	// Network.
	netComp := &NetworkComponent{}
	if err := ctx.RegisterComponentResource(TypeNetwork, name+"-network", netComp, parent); err != nil {
		return nil, err
	}
	c.Network, err = compute.NewNetwork(ctx, name+"-vpc", &compute.NetworkArgs{
		Name:                  pulumi.String(cfg.ResourceName("vpc")),
		Description:           pulumi.String("Swarm cluster VPC of stack " + cfg.Stack),
		AutoCreateSubnetworks: pulumi.Bool(false),
		RoutingMode:           pulumi.String("REGIONAL"),
		Mtu:                   pulumi.Int(cfg.MTU),
	}, gcpOpts(netComp)...)
	if err != nil {
		return nil, err
	}
	c.Subnetwork, err = compute.NewSubnetwork(ctx, name+"-subnet", &compute.SubnetworkArgs{
		Name:                  pulumi.String(cfg.ResourceName("subnet")),
		Network:               c.Network.ID(),
		Region:                pulumi.String(cfg.Region),
		IpCidrRange:           pulumi.String(cfg.SubnetCIDR),
		PrivateIpGoogleAccess: pulumi.Bool(true),
	}, gcpOpts(netComp)...)
	if err != nil {
		return nil, err
	}
	if err := ctx.RegisterResourceOutputs(netComp, pulumi.Map{
		"network":    c.Network.SelfLink,
		"subnetwork": c.Subnetwork.SelfLink,
		"mtu":        c.Network.Mtu,
	}); err != nil {
		return nil, err
	}

	// Service account: logs and metrics only.
	sa, err := serviceaccount.NewAccount(ctx, name+"-nodes-sa", &serviceaccount.AccountArgs{
		AccountId:   pulumi.String(cfg.ServiceAccountID()),
		DisplayName: pulumi.String("Swarm nodes of stack " + cfg.Stack),
	}, gcpOpts(c)...)
	if err != nil {
		return nil, err
	}
	c.ServiceAccountEmail = sa.Email
	var bindings []pulumi.Resource
	for _, role := range NodeServiceAccountRoles {
		short := strings.TrimPrefix(role, "roles/")
		short = strings.ReplaceAll(short, ".", "-")
		b, err := projects.NewIAMMember(ctx, name+"-nodes-sa-"+short, &projects.IAMMemberArgs{
			Project: pulumi.String(cfg.Project),
			Role:    pulumi.String(role),
			Member:  sa.Member,
		}, gcpOpts(c)...)
		if err != nil {
			return nil, err
		}
		bindings = append(bindings, b)
	}

	// Nodes.
	var sshKeys pulumi.StringOutput
	if args.SSHPublicKey != nil {
		user := cfg.SSHUser
		sshKeys = args.SSHPublicKey.ToStringOutput().ApplyT(func(k string) string {
			return user + ":" + strings.TrimSpace(k)
		}).(pulumi.StringOutput)
	}
	for _, pn := range top.Nodes {
		cn, err := newNode(ctx, name, c, pn, args, sshKeys, bindings, gcpOpts)
		if err != nil {
			return nil, err
		}
		c.Nodes[pn.Name] = cn
	}

	// Firewall.
	fwComp := &FirewallComponent{}
	if err := ctx.RegisterComponentResource(TypeFirewall, name+"-firewall", fwComp, parent); err != nil {
		return nil, err
	}
	fwOut := pulumi.Map{}
	for _, r := range top.Firewall {
		allows := compute.FirewallAllowArray{}
		for _, a := range r.Allows {
			allows = append(allows, compute.FirewallAllowArgs{
				Protocol: pulumi.String(a.Protocol),
				Ports:    pulumi.ToStringArray(a.Ports),
			})
		}
		fa := &compute.FirewallArgs{
			Name:        pulumi.String(cfg.ResourceName(r.Name)),
			Description: pulumi.String(r.Description),
			Network:     c.Network.SelfLink,
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
		fw, err := compute.NewFirewall(ctx, name+"-"+r.Name, fa, gcpOpts(fwComp)...)
		if err != nil {
			return nil, err
		}
		c.Firewall[r.Name] = fw
		fwOut[r.Name] = fw.Name
	}
	if err := ctx.RegisterResourceOutputs(fwComp, fwOut); err != nil {
		return nil, err
	}

	// DNS.
	dnsComp := &DNSComponent{}
	if err := ctx.RegisterComponentResource(TypeDNS, name+"-dns", dnsComp, parent); err != nil {
		return nil, err
	}
	dnsOut := pulumi.Map{}
	for _, rec := range top.DNS {
		node, ok := c.Nodes[rec.Node]
		if !ok {
			return nil, fmt.Errorf("infra.NewCluster: DNS record %s points at unknown node %q", rec.Name, rec.Node)
		}
		sub := rec.Sub
		if sub == "" {
			sub = "apex"
		}
		r, err := cloudflare.NewRecord(ctx, name+"-dns-"+sub, &cloudflare.RecordArgs{
			ZoneId:  pulumi.String(cfg.CloudflareZoneID),
			Name:    pulumi.String(rec.Name),
			Type:    pulumi.String(rec.Type),
			Content: node.ExternalIP, // never the deprecated `value`
			Proxied: pulumi.Bool(rec.Proxied),
			Ttl:     pulumi.Int(1), // automatic (required for proxied records)
			Comment: pulumi.String(fmt.Sprintf("pulumi stack %s, node %s", cfg.Stack, rec.Node)),
		}, pulumi.Parent(dnsComp), pulumi.Provider(c.CloudflareProvider))
		if err != nil {
			return nil, err
		}
		c.DNS[rec.Sub] = r
		dnsOut[sub] = r.Hostname
	}
	if err := ctx.RegisterResourceOutputs(dnsComp, dnsOut); err != nil {
		return nil, err
	}

	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"network":             c.Network.SelfLink,
		"serviceAccountEmail": c.ServiceAccountEmail,
		"nodes":               c.NodesOutput(),
		"urls":                pulumi.ToStringMap(top.PublicURLs()),
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func newNode(ctx *pulumi.Context, name string, c *Cluster, pn PlannedNode, args *ClusterArgs,
	sshKeys pulumi.StringOutput, bindings []pulumi.Resource,
	gcpOpts func(pulumi.Resource, ...pulumi.ResourceOption) []pulumi.ResourceOption,
) (*ClusterNode, error) {
	cfg := c.Topology.Config
	comp := &NodeComponent{}
	if err := ctx.RegisterComponentResource(TypeNode, name+"-"+pn.Name, comp, pulumi.Parent(c)); err != nil {
		return nil, err
	}
	labels := pulumi.ToStringMap(cfg.GCPLabels(pn.Node))
	// Static addresses are the stateful part: DNS and the swarm's join
	// address point at them. Protected on prod (platform:protect).
	ext, err := compute.NewAddress(ctx, name+"-"+pn.Name+"-ip", &compute.AddressArgs{
		Name:        pulumi.String(cfg.ResourceName(pn.Name + "-ip")),
		Description: pulumi.String("external address of " + pn.ResourceName),
		Region:      pulumi.String(cfg.Region),
		AddressType: pulumi.String("EXTERNAL"),
		NetworkTier: pulumi.String("PREMIUM"),
		Labels:      labels,
	}, gcpOpts(comp, pulumi.Protect(cfg.Protect))...)
	if err != nil {
		return nil, err
	}
	in, err := compute.NewAddress(ctx, name+"-"+pn.Name+"-internal-ip", &compute.AddressArgs{
		Name:        pulumi.String(cfg.ResourceName(pn.Name + "-internal-ip")),
		Description: pulumi.String("internal address of " + pn.ResourceName),
		Region:      pulumi.String(cfg.Region),
		AddressType: pulumi.String("INTERNAL"),
		Subnetwork:  c.Subnetwork.ID(),
		Address:     pulumi.String(pn.InternalIP),
		Labels:      labels,
	}, gcpOpts(comp, pulumi.Protect(cfg.Protect))...)
	if err != nil {
		return nil, err
	}

	metadata := pulumi.StringMap{
		// Only the keys below may log in; project-wide keys are ignored.
		"block-project-ssh-keys": pulumi.String("TRUE"),
		"enable-oslogin":         pulumi.String("FALSE"),
	}
	if s, ok := args.StartupScripts[pn.Name]; ok {
		// metadata["startup-script"], not metadataStartupScript: changing the
		// latter recreates the VM.
		metadata["startup-script"] = pulumi.String(s)
	}
	if args.SSHPublicKey != nil {
		metadata["ssh-keys"] = sshKeys
	}
	vm, err := compute.NewInstance(ctx, name+"-"+pn.Name, &compute.InstanceArgs{
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
				Subnetwork: c.Subnetwork.ID(),
				NetworkIp:  in.Address,
				AccessConfigs: compute.InstanceNetworkInterfaceAccessConfigArray{
					compute.InstanceNetworkInterfaceAccessConfigArgs{
						NatIp:       ext.Address,
						NetworkTier: pulumi.String("PREMIUM"),
					},
				},
			},
		},
		ServiceAccount: compute.InstanceServiceAccountArgs{
			Email: c.ServiceAccountEmail,
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
	}, gcpOpts(comp, pulumi.DependsOn(bindings))...)
	if err != nil {
		return nil, err
	}
	cn := &ClusterNode{
		Instance:          vm,
		InternalIP:        in.Address,
		ExternalIP:        ext.Address,
		Component:         comp,
		ExternalIPAddress: ext,
		InternalIPAddress: in,
	}
	if err := ctx.RegisterResourceOutputs(comp, pulumi.Map{
		"instance":   vm.Name,
		"internalIp": cn.InternalIP,
		"externalIp": cn.ExternalIP,
	}); err != nil {
		return nil, err
	}
	return cn, nil
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
