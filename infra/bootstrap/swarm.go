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
	cfg, cluster := args.Config, args.Cluster
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	for _, n := range cfg.Nodes {
		cn := cluster.Nodes[n.Name]
		if cn == nil || cn.Instance == nil {
			return nil, fmt.Errorf("bootstrap: cluster has no VM for node %s", n.Name)
		}
	}
	mgr := cfg.Manager()
	s := &Swarm{Manager: cluster.Nodes[mgr.Name].Instance, NodeIDs: map[string]pulumi.StringOutput{}}
	d := &swarmDecl{ctx: ctx, name: name, cfg: cfg, cluster: cluster, access: args.Access, s: s,
		mgr: mgr, mgrVM: cluster.Nodes[mgr.Name], engine: map[string]*remote.Command{}, membership: map[string]pulumi.Resource{}}
	if err := infra.DeclareComponent(ctx, "platform:bootstrap:Swarm", name, s, d.swarm, opts...); err != nil {
		return nil, err
	}
	return s, nil
}

// swarmDecl declares one Swarm's steps.
type swarmDecl struct {
	ctx     *pulumi.Context
	name    string
	cfg     *infra.Config
	cluster *infra.Cluster
	access  *Access
	s       *Swarm
	parent  pulumi.ResourceOption

	mgr   infra.Node
	mgrVM *infra.ClusterNode
	// What the later steps wait for: each node's engine, the Docker API,
	// swarm init and the worker token, each node's membership.
	engine     map[string]*remote.Command
	dockerAPI  *remote.Command
	initCmd    *remote.Command
	token      *remote.Command
	membership map[string]pulumi.Resource
}

// conn: SSH as the GCE login created from the instances' ssh-keys
// metadata (infra puts access.SSHPublicKey there). Dialing is retried for
// up to ten minutes: a fresh VM needs a while before sshd and the guest
// agent accept the key.
func (d *swarmDecl) conn(ip pulumi.StringOutput) remote.ConnectionArgs {
	return remote.ConnectionArgs{
		Host:           ip,
		User:           pulumi.String(d.cfg.SSHUser),
		PrivateKey:     d.access.SSHPrivateKey,
		DialErrorLimit: pulumi.IntPtr(40),
		PerDialTimeout: pulumi.IntPtr(15),
	}
}

// step: per-node commands carry the VM's unique instance ID as a trigger,
// so a rebuilt VM (same name, same addresses) reruns its steps. They are
// deleted with their VM: no SSH attempt against a VM that is going away.
func (d *swarmDecl) step(rname string, vm *infra.ClusterNode, args *remote.CommandArgs, more ...pulumi.ResourceOption) (*remote.Command, error) {
	args.Triggers = pulumi.Array{vm.Instance.InstanceId}
	o := append([]pulumi.ResourceOption{d.parent, pulumi.DeletedWith(vm.Instance)}, more...)
	return remote.NewCommand(d.ctx, rname, args, o...)
}

func (d *swarmDecl) swarm(parent pulumi.ResourceOption) (pulumi.Map, error) {
	d.parent = parent
	s := d.s
	for _, step := range []func() error{d.engines, d.dockerAPIStep, d.init, d.workerToken} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	s.Ready = []pulumi.Resource{d.dockerAPI, d.initCmd}
	d.membership[d.mgr.Name] = d.initCmd
	for _, n := range d.cfg.Workers() {
		ready, err := d.join(n)
		if err != nil {
			return nil, err
		}
		s.Ready = append(s.Ready, ready...)
	}
	labels, err := d.labels()
	if err != nil {
		return nil, err
	}
	s.Ready = append(s.Ready, labels...)

	// 7. The docker provider the stack deploys through.
	s.DockerHost = pulumi.Sprintf("tcp://%s:%d", d.mgrVM.ExternalIP, DockerAPIPort)
	s.Provider, err = docker.NewProvider(d.ctx, d.name+"-docker", &docker.ProviderArgs{
		Host:         s.DockerHost,
		CaMaterial:   pulumi.ToSecret(d.access.CACertPEM).(pulumi.StringOutput),
		CertMaterial: pulumi.ToSecret(d.access.ClientCertPEM).(pulumi.StringOutput),
		KeyMaterial:  pulumi.ToSecret(d.access.ClientKeyPEM).(pulumi.StringOutput),
	}, parent, pulumi.DependsOn([]pulumi.Resource{d.dockerAPI}))
	if err != nil {
		return nil, err
	}
	nodeIDs := pulumi.StringMap{}
	for k, v := range s.NodeIDs {
		nodeIDs[k] = v
	}
	return pulumi.Map{
		"dockerHost": s.DockerHost,
		"clusterId":  s.ClusterID,
		"nodeIds":    nodeIDs,
	}, nil
}

// engines (1): the engine is ready on every node: the startup script
// this program rendered has been applied and dockerd answers.
func (d *swarmDecl) engines() error {
	for _, n := range d.cfg.Nodes {
		vm := d.cluster.Nodes[n.Name]
		script, err := engineReadyScript(StartupVersion(startupParams(d.cfg, n)))
		if err != nil {
			return err
		}
		c, err := d.step(fmt.Sprintf("%s-engine-%s", d.name, n.Name), vm, &remote.CommandArgs{
			Connection: d.conn(vm.ExternalIP),
			Create:     pulumi.String(asRoot(script)),
		}, pulumi.DependsOn([]pulumi.Resource{vm.Instance}))
		if err != nil {
			return err
		}
		d.engine[n.Name] = c
	}
	return nil
}

// dockerAPIStep (2): the Docker API on the manager, mutual TLS only. The
// server certificate names the manager's internal and external addresses.
func (d *swarmDecl) dockerAPIStep() error {
	cfg, mgr, mgrVM := d.cfg, d.mgr, d.mgrVM
	serverKey, serverCert, err := d.access.issue(d.ctx, d.name+"-docker-server", "docker API "+cfg.ResourceName(mgr.Name),
		pulumi.StringArray{pulumi.String(cfg.NodeInternalIP(mgr.Name)), mgrVM.ExternalIP, pulumi.String("127.0.0.1")}, nil,
		[]string{"server_auth", "digital_signature", "key_encipherment"}, d.parent)
	if err != nil {
		return err
	}
	tlsScript, err := dockerTLSScript(cfg.NodeInternalIP(mgr.Name))
	if err != nil {
		return err
	}
	tlsFiles := pulumi.All(d.access.CACertPEM, serverCert.CertPem, serverKey.PrivateKeyPem).ApplyT(func(v []any) string {
		enc := base64.StdEncoding.EncodeToString
		return enc([]byte(v[0].(string))) + "\n" + enc([]byte(v[1].(string))) + "\n" + enc([]byte(v[2].(string))) + "\n"
	}).(pulumi.StringOutput)
	d.dockerAPI, err = d.step(d.name+"-docker-api", mgrVM, &remote.CommandArgs{
		Connection: d.conn(mgrVM.ExternalIP),
		Create:     pulumi.String(asRoot(tlsScript)),
		Stdin:      pulumi.ToSecret(tlsFiles).(pulumi.StringOutput),
	}, pulumi.DependsOn([]pulumi.Resource{d.engine[mgr.Name]}), pulumi.AdditionalSecretOutputs([]string{"stdin"}))
	return err
}

// init (3): swarm init on the manager, advertising its VPC-internal
// address.
func (d *swarmDecl) init() error {
	cfg, mgr := d.cfg, d.mgr
	initScript, err := initParams{AdvertiseAddr: cfg.NodeInternalIP(mgr.Name), MTU: cfg.MTU, Subnet: cfg.SubnetCIDR}.script()
	if err != nil {
		return err
	}
	d.initCmd, err = d.step(d.name+"-init", d.mgrVM, &remote.CommandArgs{
		Connection: d.conn(d.mgrVM.ExternalIP),
		Create:     pulumi.String(asRoot(initScript)),
	}, pulumi.DependsOn([]pulumi.Resource{d.dockerAPI}))
	if err != nil {
		return err
	}
	initOut := d.initCmd.Stdout.ApplyT(func(out string) ([]string, error) {
		c, n, err := parseInit(out)
		return []string{c, n}, err
	}).(pulumi.StringArrayOutput)
	d.s.ClusterID = initOut.Index(pulumi.Int(0))
	d.s.NodeIDs[mgr.Name] = initOut.Index(pulumi.Int(1))
	return nil
}

// workerToken (4): the worker join token, a secret output, never logged.
// Re-read when the swarm changes (a rebuilt manager has a new node ID).
func (d *swarmDecl) workerToken() error {
	var err error
	d.token, err = remote.NewCommand(d.ctx, d.name+"-worker-token", &remote.CommandArgs{
		Connection: d.conn(d.mgrVM.ExternalIP),
		Create:     pulumi.String(tokenCommand),
		Triggers:   pulumi.Array{d.initCmd.Stdout},
		Logging:    remote.LoggingNone,
		// Do not hand the previous token to the next run's environment.
		AddPreviousOutputInEnv: pulumi.Bool(false),
	}, d.parent, pulumi.DependsOn([]pulumi.Resource{d.initCmd}), pulumi.DeletedWith(d.mgrVM.Instance),
		pulumi.AdditionalSecretOutputs([]string{"stdout", "stderr"}))
	return err
}

// join (5): a worker joins (idempotent), then the manager tidies its node
// list for that worker and removes the node when the worker leaves the
// config. It returns both steps.
func (d *swarmDecl) join(n infra.Node) ([]pulumi.Resource, error) {
	cfg, vm := d.cfg, d.cluster.Nodes[n.Name]
	managerNodeID := d.s.NodeIDs[d.mgr.Name]
	joinCreate := managerNodeID.ApplyT(func(id string) (string, error) {
		sc, err := joinParams{ManagerAddr: cfg.NodeInternalIP(d.mgr.Name), ManagerNodeID: id}.script()
		return asRoot(sc), err
	}).(pulumi.StringOutput)
	tokenStdin := pulumi.ToSecret(d.token.Stdout.ApplyT(func(t string) string { return t + "\n" })).(pulumi.StringOutput)
	join, err := d.step(fmt.Sprintf("%s-join-%s", d.name, n.Name), vm, &remote.CommandArgs{
		Connection: d.conn(vm.ExternalIP),
		Create:     joinCreate,
		Stdin:      tokenStdin,
	}, pulumi.DependsOn([]pulumi.Resource{d.engine[n.Name], d.token}), pulumi.AdditionalSecretOutputs([]string{"stdin"}))
	if err != nil {
		return nil, err
	}
	nodeID := join.Stdout.ApplyT(parseNodeID).(pulumi.StringOutput)
	d.s.NodeIDs[n.Name] = nodeID

	memberScripts := pulumi.All(nodeID, vm.Instance.Name).ApplyT(func(v []any) ([]string, error) {
		keep, err := memberScript("keep", v[0].(string), v[1].(string))
		if err != nil {
			return nil, err
		}
		remove, err := memberScript("remove", v[0].(string), v[1].(string))
		return []string{asRoot(keep), asRoot(remove)}, err
	}).(pulumi.StringArrayOutput)
	member, err := remote.NewCommand(d.ctx, fmt.Sprintf("%s-member-%s", d.name, n.Name), &remote.CommandArgs{
		Connection: d.conn(d.mgrVM.ExternalIP),
		Create:     memberScripts.Index(pulumi.Int(0)),
		Delete:     memberScripts.Index(pulumi.Int(1)),
	}, d.parent, pulumi.DependsOn([]pulumi.Resource{join}), pulumi.DeletedWith(d.mgrVM.Instance))
	if err != nil {
		return nil, err
	}
	d.membership[n.Name] = member
	return []pulumi.Resource{join, member}, nil
}

// labels (6): one resource per (node, key). Changing a value updates that
// resource (create runs again); removing a key deletes it (the delete
// command removes the label); nothing else is touched. The node is
// addressed by the ID it reported, so a relabel never needs a lookup.
func (d *swarmDecl) labels() ([]pulumi.Resource, error) {
	var out []pulumi.Resource
	for _, n := range d.cfg.Nodes {
		labels, err := NodeLabels(d.cfg, n)
		if err != nil {
			return nil, err
		}
		vm := d.cluster.Nodes[n.Name]
		for _, l := range labels {
			scripts := d.s.NodeIDs[n.Name].ApplyT(func(id string) ([]string, error) {
				add, err := labelScript("add", id, l)
				if err != nil {
					return nil, err
				}
				rm, err := labelScript("remove", id, l)
				return []string{asRoot(add), asRoot(rm)}, err
			}).(pulumi.StringArrayOutput)
			lc, err := remote.NewCommand(d.ctx, fmt.Sprintf("%s-label-%s-%s", d.name, n.Name, l.Key), &remote.CommandArgs{
				Connection: d.conn(d.mgrVM.ExternalIP),
				Create:     scripts.Index(pulumi.Int(0)),
				Delete:     scripts.Index(pulumi.Int(1)),
			}, d.parent, pulumi.DependsOn([]pulumi.Resource{d.membership[n.Name]}), pulumi.DeletedWith(vm.Instance))
			if err != nil {
				return nil, err
			}
			out = append(out, lc)
		}
	}
	return out, nil
}
