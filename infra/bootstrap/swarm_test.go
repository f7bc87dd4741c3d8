package bootstrap

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/internal/pulumitest"
)

const (
	tCommand  = "command:remote:Command"
	tInstance = "gcp:compute/instance:Instance"
	tProvider = "pulumi:providers:docker"

	mockClusterID = "clusterid0123456789abcdef"
)

func mockNodeID(node string) string { return "nodeid" + node }

// commandMocks answers what the scripts print on a real node: init prints
// "<cluster id> <node id>", a join prints the node ID, the token command the
// token.
func commandMocks(cfg *infra.Config) *pulumitest.Mocks {
	m := pulumitest.NewMocks()
	m.OnResource(tCommand, func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		var stdout string
		switch {
		case args.Name == "swarm-init":
			stdout = mockClusterID + " " + mockNodeID(cfg.Manager().Name) + "\n"
		case strings.HasPrefix(args.Name, "swarm-join-"):
			stdout = mockNodeID(strings.TrimPrefix(args.Name, "swarm-join-")) + "\n"
		case args.Name == "swarm-worker-token":
			stdout = testToken + "\n"
		}
		outs["stdout"] = resource.NewStringProperty(stdout)
		return outs, nil
	})
	return m
}

// bootstrapProgram is what program.Run does up to the swarm.
func bootstrapProgram(got **Swarm, gotAccess **Access) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cfg, err := infra.LoadConfig(ctx)
		if err != nil {
			return err
		}
		if err := Validate(cfg); err != nil {
			return err
		}
		scripts, err := StartupScripts(cfg)
		if err != nil {
			return err
		}
		access, err := NewAccess(ctx, "access", &AccessArgs{})
		if err != nil {
			return err
		}
		cluster, err := infra.NewCluster(ctx, "cluster", &infra.ClusterArgs{
			Topology: infra.Plan(cfg), StartupScripts: scripts, SSHPublicKey: access.SSHPublicKey,
		})
		if err != nil {
			return err
		}
		s, err := NewSwarm(ctx, "swarm", &SwarmArgs{Config: cfg, Cluster: cluster, Access: access})
		if err != nil {
			return err
		}
		*got, *gotAccess = s, access
		return nil
	}
}

func stackConfig(t *testing.T, stack string) map[string]string {
	raw := pulumitest.StackConfig(t, stack)
	if _, ok := raw["platform:gcpProject"]; !ok {
		raw = pulumitest.With(raw, "platform:gcpProject", "ci-project",
			"platform:cloudflareZoneId", "ci-zone", "platform:adminCidrs", `["198.51.100.0/24"]`)
	}
	return raw
}

func runSwarm(t *testing.T, stack string) (*pulumitest.Mocks, *infra.Config, *Swarm, *Access) {
	t.Helper()
	cfg := loadConfig(t, stack)
	var s *Swarm
	var a *Access
	m := commandMocks(cfg)
	if err := pulumitest.RunWith(t, m, "platform", stack, stackConfig(t, stack), bootstrapProgram(&s, &a)); err != nil {
		t.Fatalf("%s: %v", stack, err)
	}
	return m, cfg, s, a
}

// dependsOn reports whether r depends on urn directly or through other
// resources (the order the engine will create them in).
func dependsOn(m *pulumitest.Mocks, r pulumitest.Resource, urn string) bool {
	seen := map[string]bool{}
	var walk func(pulumitest.Resource) bool
	walk = func(r pulumitest.Resource) bool {
		var deps []string
		deps = append(deps, r.Dependencies...)
		for _, ds := range r.PropertyDependencies {
			deps = append(deps, ds...)
		}
		for _, d := range deps {
			if d == urn {
				return true
			}
			if seen[d] {
				continue
			}
			seen[d] = true
			if dr, ok := m.ByURN(d); ok && walk(dr) {
				return true
			}
		}
		return false
	}
	return walk(r)
}

func TestSwarmOrder(t *testing.T) {
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			m, cfg, s, _ := runSwarm(t, stack)
			cmd := func(name string) pulumitest.Resource { return m.MustGet(t, tCommand, name) }
			vm := func(node string) pulumitest.Resource { return m.MustGet(t, tInstance, "cluster-"+node) }
			before := func(later pulumitest.Resource, earlier pulumitest.Resource) {
				t.Helper()
				if !dependsOn(m, later, earlier.URN) {
					t.Errorf("%s does not depend on %s", later.Name, earlier.Name)
				}
			}
			mgr := cfg.Manager().Name
			initCmd, token, api := cmd("swarm-init"), cmd("swarm-worker-token"), cmd("swarm-docker-api")
			for _, n := range cfg.Nodes {
				engine := cmd("swarm-engine-" + n.Name)
				if !engine.DependsOn(vm(n.Name).URN) {
					t.Errorf("engine-ready of %s does not depend on its VM", n.Name)
				}
				if n.Role == infra.RoleWorker {
					join := cmd("swarm-join-" + n.Name)
					before(join, engine)
					before(join, initCmd)
					before(join, token)
					before(cmd("swarm-member-"+n.Name), join)
				}
				labels, _ := NodeLabels(cfg, n)
				if len(labels) == 0 {
					t.Fatalf("node %s has no labels", n.Name)
				}
				for _, l := range labels {
					lr := cmd(fmt.Sprintf("swarm-label-%s-%s", n.Name, l.Key))
					before(lr, initCmd)
					if n.Role == infra.RoleWorker {
						before(lr, cmd("swarm-join-"+n.Name))
						before(lr, cmd("swarm-member-"+n.Name))
					}
				}
			}
			before(api, cmd("swarm-engine-"+mgr))
			before(initCmd, api)
			before(initCmd, vm(mgr))
			before(token, initCmd)

			// Ready is everything the stack must wait for: every label,
			// join and the init.
			ready := map[string]bool{}
			for _, r := range s.Ready {
				urn, err := pulumitest.Await(r.URN())
				if err != nil {
					t.Fatal(err)
				}
				ready[fmt.Sprint(urn.Value)] = true
			}
			for _, r := range m.ByType(tCommand) {
				want := strings.HasPrefix(r.Name, "swarm-label-") || strings.HasPrefix(r.Name, "swarm-join-") ||
					strings.HasPrefix(r.Name, "swarm-member-") || r.Name == "swarm-init" || r.Name == "swarm-docker-api"
				if want && !ready[r.URN] {
					t.Errorf("Ready lacks %s", r.Name)
				}
			}
			if p := m.MustGet(t, tProvider, "swarm-docker"); !p.DependsOn(api.URN) {
				t.Errorf("docker provider does not depend on the docker API step")
			}
		})
	}
}

// Per-node steps go away with their VM instead of dialling it on destroy;
// steps on the manager go away with the manager.
func TestSwarmDeletedWithVMs(t *testing.T) {
	m, cfg, _, _ := runSwarm(t, "prod")
	vm := func(node string) string { return m.MustGet(t, tInstance, "cluster-"+node).URN }
	mgr := cfg.Manager().Name
	for _, r := range m.ByType(tCommand) {
		var want string
		switch {
		case strings.HasPrefix(r.Name, "swarm-engine-"):
			want = vm(strings.TrimPrefix(r.Name, "swarm-engine-"))
		case strings.HasPrefix(r.Name, "swarm-join-"):
			want = vm(strings.TrimPrefix(r.Name, "swarm-join-"))
		case strings.HasPrefix(r.Name, "swarm-label-"):
			rest := strings.TrimPrefix(r.Name, "swarm-label-")
			want = vm(rest[:strings.Index(rest, "-")])
		default: // init, token, docker-api, member: run on the manager
			want = vm(mgr)
		}
		if r.DeletedWith != want {
			t.Errorf("%s: DeletedWith %q, want %q", r.Name, r.DeletedWith, want)
		}
		// A rebuilt VM (new instance ID) reruns the per-node steps.
		if strings.HasPrefix(r.Name, "swarm-engine-") || strings.HasPrefix(r.Name, "swarm-join-") || r.Name == "swarm-init" {
			if trig, _ := r.Input("triggers"); len(trig.([]any)) != 1 {
				t.Errorf("%s: triggers %v, want the instance ID", r.Name, trig)
			}
		}
	}
}

func TestSwarmSecrets(t *testing.T) {
	m, _, s, a := runSwarm(t, "prod")

	token := m.MustGet(t, tCommand, "swarm-worker-token")
	for _, o := range []string{"stdout", "stderr"} {
		if !slices.Contains(token.AdditionalSecretOutputs, o) {
			t.Errorf("worker token: %s is not an additional secret output (%v)", o, token.AdditionalSecretOutputs)
		}
	}
	if v, _ := token.Input("addPreviousOutputInEnv"); v != false {
		t.Errorf("worker token: addPreviousOutputInEnv %v, want false", v)
	}
	if lg := token.InputString("logging"); lg != "none" {
		t.Errorf("worker token: logging %q, want none", lg)
	}
	for _, r := range m.ByType(tCommand) {
		if !r.IsSecretInput("connection") {
			t.Errorf("%s: connection (with the SSH key) is not secret", r.Name)
		}
		if strings.HasPrefix(r.Name, "swarm-join-") {
			if !r.IsSecretInput("stdin") || !strings.Contains(r.InputString("stdin"), testToken) {
				t.Errorf("%s: the token is not passed as secret stdin", r.Name)
			}
			if !slices.Contains(r.AdditionalSecretOutputs, "stdin") {
				t.Errorf("%s: stdin output not marked secret", r.Name)
			}
		}
		// The token travels on stdin only: never in a command text.
		for _, f := range []string{"create", "update", "delete"} {
			if strings.Contains(r.InputString(f), "SWMTKN") || strings.Contains(r.InputString(f), "PRIVATE KEY") {
				t.Errorf("%s: %s contains secret material", r.Name, f)
			}
		}
	}
	api := m.MustGet(t, tCommand, "swarm-docker-api")
	if !api.IsSecretInput("stdin") {
		t.Errorf("docker API step: server key material on stdin is not secret")
	}

	p := m.MustGet(t, tProvider, "swarm-docker")
	for _, k := range []string{"caMaterial", "certMaterial", "keyMaterial"} {
		if !p.IsSecretInput(k) || p.InputString(k) == "" {
			t.Errorf("docker provider: %s is missing or not secret", k)
		}
	}
	if h := p.InputString("host"); !strings.HasPrefix(h, "tcp://203.0.113.") || !strings.HasSuffix(h, ":2376") {
		t.Errorf("docker provider host %q, want tcp://<manager external IP>:2376", h)
	}
	if p.IsSecretInput("host") {
		t.Errorf("docker provider host is secret; it is not, and should stay readable")
	}

	for name, o := range map[string]pulumi.StringOutput{
		"SSHPrivateKey": a.SSHPrivateKey, "ClientKeyPEM": a.ClientKeyPEM,
	} {
		if _, _, secret := pulumitest.AwaitString(t, o); !secret {
			t.Errorf("Access.%s is not secret", name)
		}
	}
	for name, o := range map[string]pulumi.StringOutput{
		"DockerHost": s.DockerHost, "ClusterID": s.ClusterID, "SSHPublicKey": a.SSHPublicKey,
	} {
		if v, known, secret := pulumitest.AwaitString(t, o); !known || secret || v == "" {
			t.Errorf("%s = %q known=%v secret=%v, want a known plain value", name, v, known, secret)
		}
	}
	if id, _, _ := pulumitest.AwaitString(t, s.NodeIDs["translation02"]); id != mockNodeID("translation02") {
		t.Errorf("node ID of translation02 = %q", id)
	}
}

// The manager advertises and workers join its internal address; labels go to
// the node ID that node reported.
func TestSwarmRenderedCommands(t *testing.T) {
	m, cfg, _, _ := runSwarm(t, "prod")
	mgrIP := cfg.ManagerInternalIP()
	if c := m.MustGet(t, tCommand, "swarm-init").InputString("create"); !strings.Contains(script(t, c), "readonly ADVERTISE_ADDR="+shellQuote(mgrIP)) {
		t.Errorf("init does not advertise %s:\n%s", mgrIP, c)
	}
	for _, n := range cfg.Workers() {
		c := script(t, m.MustGet(t, tCommand, "swarm-join-"+n.Name).InputString("create"))
		if !strings.Contains(c, "MANAGER_ADDR="+shellQuote(mgrIP)) || !strings.Contains(c, "MANAGER_NODE_ID="+shellQuote(mockNodeID(cfg.Manager().Name))) {
			t.Errorf("join of %s does not target the manager:\n%s", n.Name, c)
		}
	}
	for _, n := range cfg.Nodes {
		labels, _ := NodeLabels(cfg, n)
		for _, l := range labels {
			r := m.MustGet(t, tCommand, fmt.Sprintf("swarm-label-%s-%s", n.Name, l.Key))
			c, d := script(t, r.InputString("create")), script(t, r.InputString("delete"))
			for _, want := range []string{"NODE_ID=" + shellQuote(mockNodeID(n.Name)), "KEY=" + shellQuote(l.Key)} {
				if !strings.Contains(c, want) || !strings.Contains(d, want) {
					t.Errorf("label %s of %s: create/delete lack %s", l.Key, n.Name, want)
				}
			}
			if !strings.Contains(c, "ACTION="+shellQuote("add")) || !strings.Contains(d, "ACTION="+shellQuote("remove")) {
				t.Errorf("label %s of %s: create must add and delete remove", l.Key, n.Name)
			}
			if !strings.Contains(c, "VALUE="+shellQuote(l.Value)) {
				t.Errorf("label %s of %s: value %q missing", l.Key, n.Name, l.Value)
			}
			// Label commands run on the manager.
			if host := r.InputString("connection.host"); host == "" || host != m.MustGet(t, tCommand, "swarm-init").InputString("connection.host") {
				t.Errorf("label %s of %s runs on %s, not on the manager", l.Key, n.Name, host)
			}
		}
	}
}

// script recovers the script a remote.Command runs from its command line
// (the inverse of asRoot), failing the test on anything else.
func script(t *testing.T, cmdline string) string {
	t.Helper()
	const prefix = "sudo -n bash -c '"
	if !strings.HasPrefix(cmdline, prefix) || !strings.HasSuffix(cmdline, "'") {
		t.Fatalf("command line is not asRoot(script): %.80q", cmdline)
	}
	return strings.ReplaceAll(cmdline[len(prefix):len(cmdline)-1], `'\''`, "'")
}

// The Docker API is mutual TLS from one private CA: the server certificate
// names the manager's addresses and is for server auth only, the client's
// for client auth only.
func TestAccessCertificates(t *testing.T) {
	m, cfg, _, _ := runSwarm(t, "prod")
	uses := func(r pulumitest.Resource) string {
		v, _ := r.Input("allowedUses")
		return fmt.Sprint(v)
	}
	ca := m.MustGet(t, "tls:index/selfSignedCert:SelfSignedCert", "access-docker-ca")
	if v, _ := ca.Input("isCaCertificate"); v != true || !strings.Contains(uses(ca), "cert_signing") {
		t.Errorf("CA: isCa=%v uses=%s", v, uses(ca))
	}
	client := m.MustGet(t, "tls:index/locallySignedCert:LocallySignedCert", "access-docker-client")
	server := m.MustGet(t, "tls:index/locallySignedCert:LocallySignedCert", "swarm-docker-server")
	if u := uses(client); !strings.Contains(u, "client_auth") || strings.Contains(u, "server_auth") {
		t.Errorf("client certificate uses %s", u)
	}
	if u := uses(server); !strings.Contains(u, "server_auth") || strings.Contains(u, "client_auth") {
		t.Errorf("server certificate uses %s", u)
	}
	for _, c := range []pulumitest.Resource{client, server} {
		if !c.IsSecretInput("caPrivateKeyPem") {
			t.Errorf("%s: CA key input is not secret", c.Name)
		}
		if c.InputString("caCertPem") == "" || c.InputString("caCertPem") != ca.OutputString("certPem") {
			t.Errorf("%s is not signed by the access CA", c.Name)
		}
	}
	csr := m.MustGet(t, "tls:index/certRequest:CertRequest", "swarm-docker-server")
	ips, _ := csr.Input("ipAddresses")
	mgrExt := m.MustGet(t, "gcp:compute/address:Address", "cluster-"+cfg.Manager().Name+"-ip").OutputString("address")
	for _, want := range []string{cfg.ManagerInternalIP(), mgrExt} {
		if want == "" || !strings.Contains(fmt.Sprint(ips), want) {
			t.Errorf("server certificate IPs %v lack %q", ips, want)
		}
	}
	ssh := m.MustGet(t, "tls:index/privateKey:PrivateKey", "access-ssh")
	if a := ssh.InputString("algorithm"); a != "ED25519" {
		t.Errorf("SSH key algorithm %s", a)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*infra.Config)
		want string
	}{
		{"no SSH user", func(c *infra.Config) { c.SSHUser = "" }, "platform:sshUser"},
		{"subnet overlaps the overlay pool", func(c *infra.Config) { c.SubnetCIDR = "10.200.16.0/20" }, "overlaps the Swarm overlay pool"},
		{"two managers", func(c *infra.Config) { c.Nodes[1].Role = infra.RoleManager }, "exactly one manager"},
		{"MTU out of range", func(c *infra.Config) { c.MTU = 9001 }, "MTU 9001"},
		{"bad label key", func(c *infra.Config) { c.Nodes[2].Labels = []string{"a b=c"} }, `node translation03: label key "a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loadConfig(t, "prod")
			tc.edit(cfg)
			if err := Validate(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if err := Validate(loadConfig(t, "prod")); err != nil {
		t.Fatalf("prod: %v", err)
	}
	if err := Validate(nil); err == nil {
		t.Fatal("nil config accepted")
	}
}
