// Package program is the whole Pulumi program (cmd/platform runs it): the
// cluster (infra), the Swarm bootstrap (infra/bootstrap) and the service
// stack (stacks), in one graph.
package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/infra/bootstrap"
	"github.com/jbcalling/platform/stacks"
)

// Run declares everything for the current stack. All configuration is
// loaded and validated before the first resource is registered, so bad
// config fails `pulumi preview` with a message naming the key and creates
// nothing.
func Run(ctx *pulumi.Context) error {
	// 1. Config, validated in full.
	cfg, err := infra.LoadConfig(ctx)
	if err != nil {
		return err
	}
	if err := bootstrap.Validate(cfg); err != nil {
		return err
	}
	topology := infra.Plan(cfg)
	scripts, err := bootstrap.StartupScripts(cfg)
	if err != nil {
		return err
	}
	// The service stack: config, catalog and validation (rules 1-5 of
	// stacks.Validate), so a bad stack fails `pulumi preview` before any
	// resource exists.
	stackCfg, err := stacks.LoadConfig(ctx, cfg)
	if err != nil {
		return err
	}
	stack, err := stacks.Catalog(topology, stackCfg)
	if err != nil {
		return err
	}
	if err := stacks.Validate(topology, stack); err != nil {
		return err
	}
	acmeToken, err := stacks.ACMEToken(ctx)
	if err != nil {
		return err
	}

	// 2. Credentials: SSH key for the bootstrap, CA and client cert for the
	// Docker API.
	access, err := bootstrap.NewAccess(ctx, "access", &bootstrap.AccessArgs{})
	if err != nil {
		return err
	}

	// 3. VMs, network, firewall, DNS; each VM boots with its startup script
	// (Docker installed and configured) and accepts the generated SSH key.
	cluster, err := infra.NewCluster(ctx, "cluster", &infra.ClusterArgs{
		Topology:       topology,
		StartupScripts: scripts,
		SSHPublicKey:   access.SSHPublicKey,
	})
	if err != nil {
		return err
	}

	// 4. The swarm: engine ready → init → joins → labels.
	swarm, err := bootstrap.NewSwarm(ctx, "swarm", &bootstrap.SwarmArgs{
		Config:  cfg,
		Cluster: cluster,
		Access:  access,
	})
	if err != nil {
		return err
	}

	// 5. The service stack, through the manager's Docker API once the swarm
	// is formed and labelled. The SFU's and the agent's images are built
	// from this repository and pushed unless platform:sfuImage and
	// platform:agentImage name prebuilt ones (the stack's config then left
	// them out of what it builds).
	externalIPs := map[string]pulumi.StringInput{}
	for name, n := range cluster.Nodes {
		externalIPs[name] = n.ExternalIP
	}
	stackArgs := &stacks.StackArgs{
		Topology: topology, Config: stackCfg, Stack: stack,
		DockerProvider:     swarm.Provider,
		DependsOn:          swarm.Ready,
		DeletedWith:        swarm.Manager,
		ExternalIPs:        externalIPs,
		ACMEDNSToken:       acmeToken,
		GCPProvider:        cluster.GCPProvider,
		CloudflareProvider: cluster.CloudflareProvider,
		Build:              &stacks.ImageBuildArgs{RepoRoot: ".", NodeServiceAccount: cluster.ServiceAccountEmail},
	}
	services, err := stacks.NewStack(ctx, "services", stackArgs)
	if err != nil {
		return err
	}

	// 6. Stack outputs. Nothing secret is exported in plaintext: the keys an
	// operator needs to reach the cluster are secret outputs
	// (`pulumi stack output --show-secrets`).
	cluster.Export(ctx) // nodes (name → internal/external IP), urls
	ctx.Export("dockerHost", swarm.DockerHost)
	ctx.Export("swarmNodeIds", pulumi.ToStringMapOutput(swarm.NodeIDs))
	ctx.Export("sshUser", pulumi.String(cfg.SSHUser))
	ctx.Export("sfuImage", services.Images["sfu"])
	ctx.Export("agentImage", services.Images["agent"])
	ctx.Export("traefikDashboardPassword", services.DashboardPassword) // secret; user admin
	ctx.Export("grafanaAdminPassword", services.GrafanaPassword)       // secret; user admin
	ctx.Export("sfuJwtSecret", services.JWTSecret)                     // secret; the smoke test signs join tokens with it
	ctx.Export("mediaNode", pulumi.String(cfg.MediaNode))
	ctx.Export("sshPrivateKey", access.SSHPrivateKey)
	ctx.Export("dockerTls", pulumi.ToSecret(pulumi.StringMap{
		"ca":   access.CACertPEM,
		"cert": access.ClientCertPEM,
		"key":  access.ClientKeyPEM,
	}))
	return nil
}
