package stacks

import (
	"encoding/base64"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/pulumi/pulumi-cloudflare/sdk/v5/go/cloudflare"
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/jbcalling/platform/infra"
)

// StackArgs are the inputs of NewStack.
type StackArgs struct {
	Topology infra.Topology
	Config   *Config
	// Stack is the validated model (Catalog + Validate). NewStack validates
	// again and registers nothing when it is invalid.
	Stack *Stack

	// DockerProvider talks to the Swarm manager (bootstrap: mutual TLS).
	// Every network, secret, config and service uses it.
	DockerProvider pulumi.ProviderResource
	// DependsOn is what must exist first (bootstrap: swarm ready, labels set).
	DependsOn []pulumi.Resource
	// DeletedWith is the manager VM: when it goes, the whole swarm goes with
	// it, so destroy skips deleting each Docker resource through an API that
	// no longer answers (pulumi-docker#139). Nil deletes them one by one.
	DeletedWith pulumi.Resource

	// ExternalIPs maps each logical node to its external address (infra
	// outputs: Cluster.Nodes[n].ExternalIP); the SFU announces the media
	// node's and coturn advertises it.
	ExternalIPs map[string]pulumi.StringInput

	// ACMEDNSToken is the Cloudflare API token Traefik's DNS-01 challenge
	// uses; it must be a secret (config.RequireSecret).
	ACMEDNSToken pulumi.StringInput

	// Prebuilt are images to run, by service, for services the program
	// otherwise builds from this repository (Service.Build: "sfu",
	// "agent"): the local-swarm proof's. Every other built service is built
	// and pushed with Build.
	Prebuilt map[string]pulumi.StringInput
	Build    *ImageBuildArgs

	// CloudflareProvider and GCPProvider are optional explicit providers for
	// the Origin CA certificate and the Artifact Registry resources.
	CloudflareProvider pulumi.ProviderResource
	GCPProvider        pulumi.ProviderResource

	// SelfSignedCertificates makes the origin certificates self-signed by
	// the tls provider instead of issued by Cloudflare's Origin CA: for a
	// swarm that no Cloudflare proxy fronts (a local one), whose clients
	// are told to trust it.
	SelfSignedCertificates bool
}

// Deployment is the deployed service stack.
type Deployment struct {
	pulumi.ResourceState

	Networks map[string]*docker.Network
	Secrets  map[string]*docker.Secret
	Services map[string]*docker.Service
	// Images are the references the built services run (repo digests when
	// the program built them), by service.
	Images map[string]pulumi.StringOutput
	// DashboardPassword and GrafanaPassword are the generated admin
	// passwords (secret outputs; `pulumi stack output --show-secrets`).
	DashboardPassword pulumi.StringOutput
	GrafanaPassword   pulumi.StringOutput
	// JWTSecret signs join tokens for the SFU (the api has it to mint
	// them); a secret output so the smoke test can mint a token against a
	// live cluster.
	JWTSecret pulumi.StringOutput
}

// NewStack validates the stack and deploys it: overlay networks, docker
// secrets, configs and one docker.Service per declared service.
func NewStack(ctx *pulumi.Context, name string, args *StackArgs, opts ...pulumi.ResourceOption) (*Deployment, error) {
	// Everything that can fail is checked before the first registration.
	toBuild, err := checkStackArgs(name, args)
	if err != nil {
		return nil, err
	}
	var src *imageSources
	if len(toBuild) > 0 {
		if src, err = findSources(name, args.Build, toBuild); err != nil {
			return nil, err
		}
	}

	d := &Deployment{Networks: map[string]*docker.Network{}, Secrets: map[string]*docker.Secret{}, Services: map[string]*docker.Service{}, Images: map[string]pulumi.StringOutput{}}
	if err := infra.DeclareComponent(ctx, "platform:stacks:ServiceStack", name, d, func(parent pulumi.ResourceOption) (pulumi.Map, error) {
		return d.declare(ctx, name, args, src, parent)
	}, opts...); err != nil {
		return nil, err
	}
	return d, nil
}

// declare declares the stack's networks, secrets, images and services
// under parent.
func (d *Deployment) declare(ctx *pulumi.Context, name string, args *StackArgs, src *imageSources, parent pulumi.ResourceOption) (pulumi.Map, error) {
	dockerOpts := []pulumi.ResourceOption{parent, pulumi.Provider(args.DockerProvider), pulumi.DependsOn(args.DependsOn)}
	if args.DeletedWith != nil {
		dockerOpts = append(dockerOpts, pulumi.DeletedWith(args.DeletedWith))
	}
	if err := d.networks(ctx, name, args.Stack, dockerOpts); err != nil {
		return nil, err
	}
	if err := d.secrets(ctx, name, args, dockerOpts); err != nil {
		return nil, err
	}
	var builtAuth *docker.ServiceAuthArgs
	if src != nil {
		built, auth, err := buildImages(ctx, name, args, src, parent)
		if err != nil {
			return nil, err
		}
		d.Images, builtAuth = built, auth
	}
	for svc, img := range args.Prebuilt {
		d.Images[svc] = img.ToStringOutput()
	}
	for _, s := range args.Stack.Services {
		if _, ok := d.Images[s.Name]; !ok && ownImages[s.Name].script != "" {
			d.Images[s.Name] = pulumi.String(s.Image).ToStringOutput() // the config's prebuilt
		}
	}
	for _, s := range args.Stack.Services {
		svcArgs, err := d.serviceArgs(ctx, name, args.Stack, &s, args, dockerOpts)
		if err != nil {
			return nil, err
		}
		if s.Build && args.Prebuilt[s.Name] == nil {
			svcArgs.Auth = builtAuth
		}
		svc, err := docker.NewService(ctx, name+"-svc-"+s.Name, svcArgs, dockerOpts...)
		if err != nil {
			return nil, err
		}
		d.Services[s.Name] = svc
	}
	return d.outputs(), nil
}

// checkStackArgs checks what NewStack needs before it registers anything
// and returns the services whose images it must build.
func checkStackArgs(name string, args *StackArgs) (toBuild []string, err error) {
	if args == nil || args.Stack == nil || args.Config == nil || args.Topology.Config == nil {
		return nil, fmt.Errorf("stacks.NewStack %s: Topology, Config and Stack are required", name)
	}
	if err := Validate(args.Topology, args.Stack); err != nil {
		return nil, err
	}
	if args.DockerProvider == nil {
		return nil, fmt.Errorf("stacks.NewStack %s: DockerProvider is required (the swarm manager)", name)
	}
	if args.ACMEDNSToken == nil {
		return nil, fmt.Errorf("stacks.NewStack %s: ACMEDNSToken is required (%s or %s)", name, KeyACMEToken, KeyCloudflareToken)
	}
	st := args.Stack
	for _, s := range st.Services {
		for env, node := range s.ExternalIPEnv {
			if args.ExternalIPs[node] == nil {
				return nil, fmt.Errorf("stacks.NewStack %s: service %s: %s needs the external IP of node %s, which ExternalIPs lacks", name, s.Name, env, node)
			}
		}
		if s.Build && args.Prebuilt[s.Name] == nil {
			toBuild = append(toBuild, s.Name)
		}
	}
	return toBuild, checkSecretSources(name, st.Secrets)
}

// checkSecretSources: every secret has a value source, and an origin
// certificate its hostnames and a key to sign with.
func checkSecretSources(name string, secrets []Secret) error {
	hasKey := slices.ContainsFunc(secrets, func(sec Secret) bool { return sec.Kind == SecretTLSKey })
	for _, sec := range secrets {
		switch sec.Kind {
		case SecretRandom, SecretHtpasswd, SecretGrafanaPasswd, SecretACMEDNSToken, SecretTLSKey:
		case SecretOriginCert:
			if len(sec.Hosts) == 0 {
				return fmt.Errorf("stacks.NewStack %s: secret %s: an origin certificate needs hostnames", name, sec.Name)
			}
			if !hasKey {
				return fmt.Errorf("stacks.NewStack %s: secret %s needs a %s secret in the stack", name, sec.Name, SecretTLSKey)
			}
		default:
			return fmt.Errorf("stacks.NewStack %s: secret %s: no value source for kind %q", name, sec.Name, sec.Kind)
		}
	}
	return nil
}

func (d *Deployment) networks(ctx *pulumi.Context, name string, st *Stack, opts []pulumi.ResourceOption) error {
	for _, n := range st.Networks {
		net, err := docker.NewNetwork(ctx, name+"-net-"+n.Name, &docker.NetworkArgs{
			Name:       pulumi.String(st.FullName(n.Name)),
			Driver:     pulumi.String("overlay"),
			Attachable: pulumi.Bool(n.Attachable),
			Internal:   pulumi.Bool(n.Internal),
			Options: pulumi.StringMap{
				"com.docker.network.driver.mtu":                  pulumi.Sprintf("%d", n.MTU),
				"com.docker.network.driver.overlay.vxlanid_list": pulumi.Sprintf("%d", n.VXLANID),
			},
			Labels: docker.NetworkLabelArray{docker.NetworkLabelArgs{Label: pulumi.String("com.docker.stack.namespace"), Value: pulumi.String(st.Prefix)}},
		}, opts...)
		if err != nil {
			return err
		}
		d.Networks[n.Name] = net
	}
	return nil
}

// secrets creates the docker secrets from their value sources.
func (d *Deployment) secrets(ctx *pulumi.Context, name string, args *StackArgs, opts []pulumi.ResourceOption) error {
	values, err := d.secretValues(ctx, name, args)
	if err != nil {
		return err
	}
	if v, ok := values["sfu_jwt_secret"]; ok {
		d.JWTSecret = pulumi.ToSecret(v).(pulumi.StringOutput)
	}
	for _, sec := range args.Stack.Secrets {
		val := values[sec.Name]
		// Name left to auto-naming (logical name + random suffix): docker
		// secrets are immutable, so a new value is a replacement that must
		// not clash with the old one still used by running tasks.
		ds, err := docker.NewSecret(ctx, name+"-secret-"+sec.Name, &docker.SecretArgs{
			Data: pulumi.ToSecret(val.ApplyT(func(v string) string {
				return base64.StdEncoding.EncodeToString([]byte(v))
			})).(pulumi.StringOutput),
			Labels: docker.SecretLabelArray{docker.SecretLabelArgs{Label: pulumi.String("com.docker.stack.namespace"), Value: pulumi.String(args.Stack.Prefix)}},
		}, opts...)
		if err != nil {
			return err
		}
		d.Secrets[sec.Name] = ds
	}
	return nil
}

// outputs are the component's: each image and each service's name. A
// stack without the dashboard or Grafana secrets still exports
// well-formed outputs.
func (d *Deployment) outputs() pulumi.Map {
	if d.DashboardPassword == (pulumi.StringOutput{}) {
		d.DashboardPassword = pulumi.ToSecret(pulumi.String("")).(pulumi.StringOutput)
	}
	if d.GrafanaPassword == (pulumi.StringOutput{}) {
		d.GrafanaPassword = pulumi.ToSecret(pulumi.String("")).(pulumi.StringOutput)
	}
	outs := pulumi.Map{}
	for svc, img := range d.Images {
		outs[svc+"Image"] = img
	}
	for _, n := range slices.Sorted(maps.Keys(d.Services)) {
		outs["service-"+n] = d.Services[n].Name
	}
	return outs
}

// secretValues creates the value source of every declared secret.
func (d *Deployment) secretValues(ctx *pulumi.Context, name string, args *StackArgs) (map[string]pulumi.StringOutput, error) {
	out := map[string]pulumi.StringOutput{}
	parent := pulumi.Parent(d)
	var tlsKey *tls.PrivateKey
	password := func(n string) (*random.RandomPassword, error) {
		return random.NewRandomPassword(ctx, name+"-"+n, &random.RandomPasswordArgs{
			Length: pulumi.Int(48), Special: pulumi.Bool(false),
		}, parent)
	}
	for _, sec := range args.Stack.Secrets {
		switch sec.Kind {
		case SecretRandom:
			p, err := password(sec.Name)
			if err != nil {
				return nil, err
			}
			out[sec.Name] = p.Result
		case SecretHtpasswd:
			p, err := password(sec.Name)
			if err != nil {
				return nil, err
			}
			d.DashboardPassword = p.Result
			out[sec.Name] = pulumi.Sprintf("admin:%s\n", p.BcryptHash)
		case SecretGrafanaPasswd:
			p, err := password(sec.Name)
			if err != nil {
				return nil, err
			}
			d.GrafanaPassword = p.Result
			out[sec.Name] = p.Result
		case SecretACMEDNSToken:
			out[sec.Name] = pulumi.ToSecret(args.ACMEDNSToken).(pulumi.StringOutput)
		case SecretTLSKey:
			k, err := tls.NewPrivateKey(ctx, name+"-"+sec.Name, &tls.PrivateKeyArgs{
				Algorithm: pulumi.String("ECDSA"), EcdsaCurve: pulumi.String("P256"),
			}, parent)
			if err != nil {
				return nil, err
			}
			tlsKey = k
			out[sec.Name] = k.PrivateKeyPem
		}
	}
	// Origin certificates need the key: second pass.
	for _, sec := range args.Stack.Secrets {
		if sec.Kind != SecretOriginCert {
			continue
		}
		if args.SelfSignedCertificates {
			cert, err := tls.NewSelfSignedCert(ctx, name+"-"+sec.Name, &tls.SelfSignedCertArgs{
				PrivateKeyPem:       tlsKey.PrivateKeyPem,
				DnsNames:            pulumi.ToStringArray(sec.Hosts),
				Subject:             &tls.SelfSignedCertSubjectArgs{CommonName: pulumi.String(sec.Hosts[0])},
				ValidityPeriodHours: pulumi.Int(365 * 24),
				EarlyRenewalHours:   pulumi.Int(30 * 24),
				AllowedUses:         pulumi.ToStringArray([]string{"digital_signature", "server_auth"}),
			}, parent)
			if err != nil {
				return nil, err
			}
			out[sec.Name] = cert.CertPem
			continue
		}
		csr, err := tls.NewCertRequest(ctx, name+"-"+sec.Name+"-csr", &tls.CertRequestArgs{
			PrivateKeyPem: tlsKey.PrivateKeyPem,
			DnsNames:      pulumi.ToStringArray(sec.Hosts),
			Subject:       &tls.CertRequestSubjectArgs{CommonName: pulumi.String(sec.Hosts[0])},
		}, parent)
		if err != nil {
			return nil, err
		}
		cfOpts := []pulumi.ResourceOption{parent}
		if args.CloudflareProvider != nil {
			cfOpts = append(cfOpts, pulumi.Provider(args.CloudflareProvider))
		}
		// Cloudflare's edge trusts its Origin CA for proxied names (Full
		// strict); the provider re-issues within MinDaysForRenewal of
		// expiry on any `up`, so renewal needs no manual step.
		cert, err := cloudflare.NewOriginCaCertificate(ctx, name+"-"+sec.Name, &cloudflare.OriginCaCertificateArgs{
			Csr:               csr.CertRequestPem,
			Hostnames:         pulumi.ToStringArray(sec.Hosts),
			RequestType:       pulumi.String("origin-ecc"),
			RequestedValidity: pulumi.Int(365),
			MinDaysForRenewal: pulumi.Int(30),
		}, cfOpts...)
		if err != nil {
			return nil, err
		}
		out[sec.Name] = cert.Certificate
	}
	return out, nil
}

func (d *Deployment) serviceArgs(ctx *pulumi.Context, name string, st *Stack, s *Service, args *StackArgs,
	dockerOpts []pulumi.ResourceOption) (*docker.ServiceArgs, error) {
	image := pulumi.String(s.Image).ToStringOutput()
	if s.Build {
		image = d.Images[s.Name] // the pushed digest, or StackArgs.Prebuilt's
	}
	env := pulumi.StringMap{}
	for k, v := range s.Env {
		env[k] = pulumi.String(v)
	}
	for k, node := range s.ExternalIPEnv {
		env[k] = args.ExternalIPs[node]
	}
	cs := &docker.ServiceTaskSpecContainerSpecArgs{
		Image: image,
		Env:   env,
	}
	if len(s.Args) > 0 {
		cs.Args = pulumi.ToStringArray(s.Args)
	}
	if len(s.Commands) > 0 {
		cs.Commands = pulumi.ToStringArray(s.Commands)
	}
	if s.StopGrace != "" {
		cs.StopGracePeriod = dur(s.StopGrace)
	}
	if len(s.ContainerLabels) > 0 {
		var ls docker.ServiceTaskSpecContainerSpecLabelArray
		for _, k := range slices.Sorted(maps.Keys(s.ContainerLabels)) {
			ls = append(ls, docker.ServiceTaskSpecContainerSpecLabelArgs{Label: pulumi.String(k), Value: pulumi.String(s.ContainerLabels[k])})
		}
		cs.Labels = ls
	}
	var secrets docker.ServiceTaskSpecContainerSpecSecretArray
	for _, r := range s.Secrets {
		sec := d.Secrets[r.Secret]
		uid := s.UID
		if uid == "" {
			uid = "0"
		}
		secrets = append(secrets, docker.ServiceTaskSpecContainerSpecSecretArgs{
			SecretId:   sec.ID().ToStringOutput(),
			SecretName: sec.Name,
			FileName:   pulumi.String("/run/secrets/" + r.File),
			// Readable by the service's own user only (docker's default is
			// 0444 for root: any process of the task could read it).
			FileUid:  pulumi.String(uid),
			FileGid:  pulumi.String(uid),
			FileMode: pulumi.Int(0o400),
		})
	}
	if len(secrets) > 0 {
		cs.Secrets = secrets
	}
	var configs docker.ServiceTaskSpecContainerSpecConfigArray
	for _, c := range s.Configs {
		cfg, err := docker.NewServiceConfig(ctx, name+"-config-"+c.Name, &docker.ServiceConfigArgs{
			Data: pulumi.String(base64.StdEncoding.EncodeToString([]byte(c.Content))),
		}, dockerOpts...)
		if err != nil {
			return nil, err
		}
		configs = append(configs, docker.ServiceTaskSpecContainerSpecConfigArgs{
			ConfigId:   cfg.ID().ToStringOutput(),
			ConfigName: cfg.Name,
			FileName:   pulumi.String(c.Target),
		})
	}
	if len(configs) > 0 {
		cs.Configs = configs
	}
	var mounts docker.ServiceTaskSpecContainerSpecMountArray
	for _, m := range s.Mounts {
		ma := docker.ServiceTaskSpecContainerSpecMountArgs{
			Type: pulumi.String(m.Type), Target: pulumi.String(m.Target), ReadOnly: pulumi.Bool(m.ReadOnly),
		}
		if m.Type != "tmpfs" {
			ma.Source = pulumi.String(m.Source)
		}
		mounts = append(mounts, ma)
	}
	if len(mounts) > 0 {
		cs.Mounts = mounts
	}
	if h := s.Healthcheck; h != nil {
		cs.Healthcheck = &docker.ServiceTaskSpecContainerSpecHealthcheckArgs{
			Tests: pulumi.ToStringArray(h.Test), Interval: dur(h.Interval), Timeout: dur(h.Timeout),
			Retries: pulumi.Int(h.Retries), StartPeriod: dur(h.StartPeriod),
		}
	}

	var nets docker.ServiceTaskSpecNetworksAdvancedArray
	if s.HostNetwork {
		nets = append(nets, docker.ServiceTaskSpecNetworksAdvancedArgs{Name: pulumi.String("host")})
	}
	for _, n := range s.Networks {
		// By resource ID: a name gives a permanent diff (pulumi-docker#233).
		// The alias keeps the short service name resolvable (redis, api).
		nets = append(nets, docker.ServiceTaskSpecNetworksAdvancedArgs{
			Name:    d.Networks[n].ID().ToStringOutput(),
			Aliases: pulumi.StringArray{pulumi.String(s.Name)},
		})
	}

	task := &docker.ServiceTaskSpecArgs{
		ContainerSpec:     cs,
		NetworksAdvanceds: nets,
		Placement: &docker.ServiceTaskSpecPlacementArgs{
			Constraints: pulumi.ToStringArray(s.Constraints),
			Prefs:       pulumi.ToStringArray(s.Preferences),
		},
		Resources: &docker.ServiceTaskSpecResourcesArgs{
			Limits: &docker.ServiceTaskSpecResourcesLimitsArgs{
				MemoryBytes: pulumi.Int(s.Resources.LimitMemoryMB << 20),
				NanoCpus:    pulumi.Int(nanoCPUs(s.Resources.LimitCPUs)),
			},
			Reservation: &docker.ServiceTaskSpecResourcesReservationArgs{
				MemoryBytes: pulumi.Int(s.Resources.ReserveMemoryMB << 20),
				NanoCpus:    pulumi.Int(nanoCPUs(s.Resources.ReserveCPUs)),
			},
		},
		RestartPolicy: &docker.ServiceTaskSpecRestartPolicyArgs{
			Condition: pulumi.String(s.Restart.Condition), Delay: dur(s.Restart.Delay),
			MaxAttempts: pulumi.Int(s.Restart.MaxAttempts), Window: dur(s.Restart.Window),
		},
	}

	mode := &docker.ServiceModeArgs{Replicated: &docker.ServiceModeReplicatedArgs{Replicas: pulumi.Int(s.Replicas)}}
	if s.Global {
		mode = &docker.ServiceModeArgs{Global: pulumi.Bool(true)}
	}
	endpointMode := "vip"
	if s.DNSRR {
		endpointMode = "dnsrr"
	}
	var ports docker.ServiceEndpointSpecPortArray
	for _, p := range s.Ports {
		ports = append(ports, docker.ServiceEndpointSpecPortArgs{
			Name: pulumi.String(p.Name), TargetPort: pulumi.Int(p.Target), PublishedPort: pulumi.Int(p.Published),
			Protocol: pulumi.String(p.Protocol), PublishMode: pulumi.String(string(p.Mode)),
		})
	}
	var labels docker.ServiceLabelArray
	for _, k := range slices.Sorted(maps.Keys(s.ServiceLabels)) {
		labels = append(labels, docker.ServiceLabelArgs{Label: pulumi.String(k), Value: pulumi.String(s.ServiceLabels[k])})
	}
	labels = append(labels, docker.ServiceLabelArgs{Label: pulumi.String("com.docker.stack.namespace"), Value: pulumi.String(st.Prefix)})

	return &docker.ServiceArgs{
		Name:           pulumi.String(st.FullName(s.Name)),
		Labels:         labels,
		Mode:           mode,
		TaskSpec:       task,
		EndpointSpec:   &docker.ServiceEndpointSpecArgs{Mode: pulumi.String(endpointMode), Ports: ports},
		UpdateConfig:   updateConfig(s.Update),
		RollbackConfig: rollbackConfig(s.Rollback),
		// Wait for the tasks to run (and pass their health checks), so a
		// broken image or placement fails `pulumi up` instead of hiding.
		ConvergeConfig: &docker.ServiceConvergeConfigArgs{Delay: dur("7s"), Timeout: dur("5m")},
	}, nil
}

func updateConfig(u UpdatePolicy) *docker.ServiceUpdateConfigArgs {
	return &docker.ServiceUpdateConfigArgs{
		Order: pulumi.String(u.Order), Parallelism: pulumi.Int(u.Parallelism), Delay: dur(u.Delay),
		FailureAction: pulumi.String(u.FailureAction), Monitor: dur(u.Monitor),
	}
}

func rollbackConfig(u UpdatePolicy) *docker.ServiceRollbackConfigArgs {
	return &docker.ServiceRollbackConfigArgs{
		Order: pulumi.String(u.Order), Parallelism: pulumi.Int(u.Parallelism), Delay: dur(u.Delay),
		FailureAction: pulumi.String(u.FailureAction), Monitor: dur(u.Monitor),
	}
}

func nanoCPUs(cpus float64) int { return int(math.Round(cpus * 1e9)) }
