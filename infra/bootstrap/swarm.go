package bootstrap

import (
	"encoding/base64"
	"fmt"

	"github.com/pulumi/pulumi-command/sdk/go/command/remote"
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/jbcalling/platform/infra"
)

// SwarmArgs configures NewSwarm.
type SwarmArgs struct {
	Config  *infra.Config
	Cluster *infra.Cluster
	Access  *Access
}

// Swarm is the Docker Swarm formed on the cluster's VMs, as steps of the
// Pulumi graph:
//
//	VM → engine ready (each node) → docker API TLS (manager) → swarm init
//	   → worker token (secret) → join (each worker) → member (each worker)
//	   → labels (one resource per node and label key) → Ready
//
// Every step is a remote.Command over SSH running an embedded, idempotent
// script as root; re-running `up` with no change runs nothing.
type Swarm struct {
	pulumi.ResourceState

	// Provider deploys to the swarm through the manager's Docker API
	// (tcp/2376, mutual TLS; key material is secret).
	Provider *docker.Provider
	// Ready is what the service stack must depend on: the swarm is formed,
	// every worker has joined and every label is set.
	Ready []pulumi.Resource
	// Manager is the manager's VM. Stack resources may use
	// pulumi.DeletedWith(Manager) so destroying a throwaway stack does not try
	// to reach a Docker API whose VM is already gone.
	Manager pulumi.Resource
	// DockerHost is tcp://<manager external IP>:2376.
	DockerHost pulumi.StringOutput
	// ClusterID is the swarm's ID (known after init).
	ClusterID pulumi.StringOutput
	// NodeIDs are the swarm node IDs by logical node name, as each node
	// reported after init/join; they stay the same across runs.
	NodeIDs map[string]pulumi.StringOutput
}

// Validate checks what the bootstrap needs from a config that infra has
// already validated: startup parameters, labels, and that the VPC subnet
// leaves room for the overlay pool. program.Run calls it before registering
// any resource.
func Validate(cfg *infra.Config) error {
	if cfg == nil {
		return fmt.Errorf("bootstrap: nil config")
	}
	if len(cfg.Managers()) != 1 {
		return fmt.Errorf("bootstrap: platform:nodes must have exactly one manager, have %d", len(cfg.Managers()))
	}
	if cfg.SSHUser == "" {
		return fmt.Errorf("bootstrap: platform:sshUser is empty")
	}
	if err := checkOverlayPool(cfg.SubnetCIDR); err != nil {
		return err
	}
	for _, n := range cfg.Nodes {
		if err := startupParams(cfg, n).validate(); err != nil {
			return err
		}
		if _, err := NodeLabels(cfg, n); err != nil {
			return err
		}
		if cfg.NodeInternalIP(n.Name) == "" {
			return fmt.Errorf("bootstrap: node %s has no internal IP", n.Name)
		}
	}
	return nil
}

// NewSwarm declares the swarm bootstrap on args.Cluster.
func NewSwarm(ctx *pulumi.Context, name string, args *SwarmArgs, opts ...pulumi.ResourceOption) (*Swarm, error) {
	if args == nil || args.Config == nil || args.Cluster == nil || args.Access == nil {
		return nil, fmt.Errorf("bootstrap: NewSwarm %s needs Config, Cluster and Access", name)
	}
	cfg, cluster, access := args.Config, args.Cluster, args.Access
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	mgr := cfg.Manager()
	for _, n := range cfg.Nodes {
		cn := cluster.Nodes[n.Name]
		if cn == nil || cn.Instance == nil {
			return nil, fmt.Errorf("bootstrap: cluster has no VM for node %s", n.Name)
		}
	}
	mgrVM := cluster.Nodes[mgr.Name]

	s := &Swarm{Manager: mgrVM.Instance, NodeIDs: map[string]pulumi.StringOutput{}}
	if err := ctx.RegisterComponentResource("platform:bootstrap:Swarm", name, s, opts...); err != nil {
		return nil, err
	}

	// SSH as the GCE login created from the instances' ssh-keys metadata
	// (infra puts access.SSHPublicKey there). Dialing is retried for up to
	// ten minutes: a fresh VM needs a while before sshd and the guest agent
	// accept the key.
	conn := func(ip pulumi.StringOutput) remote.ConnectionArgs {
		return remote.ConnectionArgs{
			Host:           ip,
			User:           pulumi.String(cfg.SSHUser),
			PrivateKey:     access.SSHPrivateKey,
			DialErrorLimit: pulumi.IntPtr(40),
			PerDialTimeout: pulumi.IntPtr(15),
		}
	}
	// Per-node commands carry the VM's unique instance ID as a trigger: a
	// rebuilt VM (same name, same addresses) reruns its steps. They are
	// deleted with their VM: no SSH attempt against a VM that is going away.
	step := func(rname string, vm *infra.ClusterNode, args *remote.CommandArgs, more ...pulumi.ResourceOption) (*remote.Command, error) {
		args.Triggers = pulumi.Array{vm.Instance.InstanceId}
		o := append([]pulumi.ResourceOption{pulumi.Parent(s), pulumi.DeletedWith(vm.Instance)}, more...)
		return remote.NewCommand(ctx, rname, args, o...)
	}

	// 1. Engine ready on every node: the startup script this program rendered
	// has been applied and dockerd answers.
	engine := map[string]*remote.Command{}
	for _, n := range cfg.Nodes {
		vm := cluster.Nodes[n.Name]
		script, err := engineReadyScript(StartupVersion(startupParams(cfg, n)))
		if err != nil {
			return nil, err
		}
		c, err := step(fmt.Sprintf("%s-engine-%s", name, n.Name), vm, &remote.CommandArgs{
			Connection: conn(vm.ExternalIP),
			Create:     pulumi.String(asRoot(script)),
		}, pulumi.DependsOn([]pulumi.Resource{vm.Instance}))
		if err != nil {
			return nil, err
		}
		engine[n.Name] = c
	}

	// 2. The Docker API on the manager, mutual TLS only. The server
	// certificate names the manager's internal and external addresses.
	serverKey, serverCert, err := access.issue(ctx, name+"-docker-server", "docker API "+cfg.ResourceName(mgr.Name),
		pulumi.StringArray{pulumi.String(cfg.NodeInternalIP(mgr.Name)), mgrVM.ExternalIP, pulumi.String("127.0.0.1")}, nil,
		[]string{"server_auth", "digital_signature", "key_encipherment"}, pulumi.Parent(s))
	if err != nil {
		return nil, err
	}
	tlsScript, err := dockerTLSScript(cfg.NodeInternalIP(mgr.Name))
	if err != nil {
		return nil, err
	}
	tlsFiles := pulumi.All(access.CACertPEM, serverCert.CertPem, serverKey.PrivateKeyPem).ApplyT(func(v []any) string {
		enc := base64.StdEncoding.EncodeToString
		return enc([]byte(v[0].(string))) + "\n" + enc([]byte(v[1].(string))) + "\n" + enc([]byte(v[2].(string))) + "\n"
	}).(pulumi.StringOutput)
	dockerAPI, err := step(name+"-docker-api", mgrVM, &remote.CommandArgs{
		Connection: conn(mgrVM.ExternalIP),
		Create:     pulumi.String(asRoot(tlsScript)),
		Stdin:      pulumi.ToSecret(tlsFiles).(pulumi.StringOutput),
	}, pulumi.DependsOn([]pulumi.Resource{engine[mgr.Name]}), pulumi.AdditionalSecretOutputs([]string{"stdin"}))
	if err != nil {
		return nil, err
	}

	// 3. swarm init on the manager, advertising its VPC-internal address.
	initScript, err := initParams{AdvertiseAddr: cfg.NodeInternalIP(mgr.Name), MTU: cfg.MTU, Subnet: cfg.SubnetCIDR}.script()
	if err != nil {
		return nil, err
	}
	initCmd, err := step(name+"-init", mgrVM, &remote.CommandArgs{
		Connection: conn(mgrVM.ExternalIP),
		Create:     pulumi.String(asRoot(initScript)),
	}, pulumi.DependsOn([]pulumi.Resource{dockerAPI}))
	if err != nil {
		return nil, err
	}
	initOut := initCmd.Stdout.ApplyT(func(out string) ([]string, error) {
		c, n, err := parseInit(out)
		return []string{c, n}, err
	}).(pulumi.StringArrayOutput)
	s.ClusterID = initOut.Index(pulumi.Int(0))
	managerNodeID := initOut.Index(pulumi.Int(1))
	s.NodeIDs[mgr.Name] = managerNodeID

	// 4. The worker join token: secret output, never logged. Re-read when the
	// swarm changes (a rebuilt manager has a new node ID).
	token, err := remote.NewCommand(ctx, name+"-worker-token", &remote.CommandArgs{
		Connection: conn(mgrVM.ExternalIP),
		Create:     pulumi.String(tokenCommand),
		Triggers:   pulumi.Array{initCmd.Stdout},
		Logging:    remote.LoggingNone,
		// Do not hand the previous token to the next run's environment.
		AddPreviousOutputInEnv: pulumi.Bool(false),
	}, pulumi.Parent(s), pulumi.DependsOn([]pulumi.Resource{initCmd}), pulumi.DeletedWith(mgrVM.Instance),
		pulumi.AdditionalSecretOutputs([]string{"stdout", "stderr"}))
	if err != nil {
		return nil, err
	}
	tokenStdin := pulumi.ToSecret(token.Stdout.ApplyT(func(t string) string { return t + "\n" })).(pulumi.StringOutput)

	ready := []pulumi.Resource{dockerAPI, initCmd}
	membership := map[string]pulumi.Resource{mgr.Name: initCmd}

	// 5. Each worker joins (idempotent), then the manager tidies its node
	// list for that worker and removes the node when the worker leaves the
	// config.
	for _, n := range cfg.Workers() {
		vm := cluster.Nodes[n.Name]
		joinCreate := managerNodeID.ApplyT(func(id string) (string, error) {
			sc, err := joinParams{ManagerAddr: cfg.NodeInternalIP(mgr.Name), ManagerNodeID: id}.script()
			return asRoot(sc), err
		}).(pulumi.StringOutput)
		join, err := step(fmt.Sprintf("%s-join-%s", name, n.Name), vm, &remote.CommandArgs{
			Connection: conn(vm.ExternalIP),
			Create:     joinCreate,
			Stdin:      tokenStdin,
		}, pulumi.DependsOn([]pulumi.Resource{engine[n.Name], token}), pulumi.AdditionalSecretOutputs([]string{"stdin"}))
		if err != nil {
			return nil, err
		}
		nodeID := join.Stdout.ApplyT(parseNodeID).(pulumi.StringOutput)
		s.NodeIDs[n.Name] = nodeID

		hostname := vm.Instance.Name
		memberScripts := pulumi.All(nodeID, hostname).ApplyT(func(v []any) ([]string, error) {
			keep, err := memberScript("keep", v[0].(string), v[1].(string))
			if err != nil {
				return nil, err
			}
			remove, err := memberScript("remove", v[0].(string), v[1].(string))
			return []string{asRoot(keep), asRoot(remove)}, err
		}).(pulumi.StringArrayOutput)
		member, err := remote.NewCommand(ctx, fmt.Sprintf("%s-member-%s", name, n.Name), &remote.CommandArgs{
			Connection: conn(mgrVM.ExternalIP),
			Create:     memberScripts.Index(pulumi.Int(0)),
			Delete:     memberScripts.Index(pulumi.Int(1)),
		}, pulumi.Parent(s), pulumi.DependsOn([]pulumi.Resource{join}), pulumi.DeletedWith(mgrVM.Instance))
		if err != nil {
			return nil, err
		}
		membership[n.Name] = member
		ready = append(ready, join, member)
	}

	// 6. Labels: one resource per (node, key). Changing a value updates that
	// resource (create runs again); removing a key deletes it (the delete
	// command removes the label); nothing else is touched. The node is
	// addressed by the ID it reported, so a relabel never needs a lookup.
	for _, n := range cfg.Nodes {
		labels, err := NodeLabels(cfg, n)
		if err != nil {
			return nil, err
		}
		vm := cluster.Nodes[n.Name]
		for _, l := range labels {
			scripts := s.NodeIDs[n.Name].ApplyT(func(id string) ([]string, error) {
				add, err := labelScript("add", id, l)
				if err != nil {
					return nil, err
				}
				rm, err := labelScript("remove", id, l)
				return []string{asRoot(add), asRoot(rm)}, err
			}).(pulumi.StringArrayOutput)
			lc, err := remote.NewCommand(ctx, fmt.Sprintf("%s-label-%s-%s", name, n.Name, l.Key), &remote.CommandArgs{
				Connection: conn(mgrVM.ExternalIP),
				Create:     scripts.Index(pulumi.Int(0)),
				Delete:     scripts.Index(pulumi.Int(1)),
			}, pulumi.Parent(s), pulumi.DependsOn([]pulumi.Resource{membership[n.Name]}), pulumi.DeletedWith(vm.Instance))
			if err != nil {
				return nil, err
			}
			ready = append(ready, lc)
		}
	}
	s.Ready = ready

	// 7. The docker provider the stack deploys through.
	s.DockerHost = pulumi.Sprintf("tcp://%s:%d", mgrVM.ExternalIP, DockerAPIPort)
	s.Provider, err = docker.NewProvider(ctx, name+"-docker", &docker.ProviderArgs{
		Host:         s.DockerHost,
		CaMaterial:   pulumi.ToSecret(access.CACertPEM).(pulumi.StringOutput),
		CertMaterial: pulumi.ToSecret(access.ClientCertPEM).(pulumi.StringOutput),
		KeyMaterial:  pulumi.ToSecret(access.ClientKeyPEM).(pulumi.StringOutput),
	}, pulumi.Parent(s), pulumi.DependsOn([]pulumi.Resource{dockerAPI}))
	if err != nil {
		return nil, err
	}

	nodeIDs := pulumi.StringMap{}
	for k, v := range s.NodeIDs {
		nodeIDs[k] = v
	}
	if err := ctx.RegisterResourceOutputs(s, pulumi.Map{
		"dockerHost": s.DockerHost,
		"clusterId":  s.ClusterID,
		"nodeIds":    nodeIDs,
	}); err != nil {
		return nil, err
	}
	return s, nil
}
