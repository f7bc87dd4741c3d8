package stacks

import (
	"encoding/base64"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/compute"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/internal/pulumitest"
)

const (
	tService = "docker:index/service:Service"
	tNetwork = "docker:index/network:Network"
	tSecret  = "docker:index/secret:Secret"
	tCommand = "command:local:Command"
	tAddress = "gcp:compute/address:Address"
)

// program is the stack part of the Pulumi program as cmd/platform runs it:
// config, catalog and validation before any resource, then the deployment
// with a docker provider and per-node external addresses standing in for the
// bootstrap's and infra's outputs.
func program(mutate func(*StackArgs)) pulumi.RunFunc { return programInto(mutate, nil) }

// programInto is program that also hands back the deployment.
func programInto(mutate func(*StackArgs), out **Deployment) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cl, err := infra.LoadConfig(ctx)
		if err != nil {
			return err
		}
		top := infra.Plan(cl)
		cfg, err := LoadConfig(ctx, cl)
		if err != nil {
			return err
		}
		st, err := Catalog(top, cfg)
		if err != nil {
			return err
		}
		if err := Validate(top, st); err != nil {
			return err
		}
		prov, err := docker.NewProvider(ctx, "swarm", &docker.ProviderArgs{Host: pulumi.String("tcp://" + cl.ManagerInternalIP() + ":2376")})
		if err != nil {
			return err
		}
		ips := map[string]pulumi.StringInput{}
		for _, n := range cl.Nodes {
			a, err := compute.NewAddress(ctx, n.Name+"-ip", &compute.AddressArgs{Region: pulumi.String(cl.Region)})
			if err != nil {
				return err
			}
			ips[n.Name] = a.Address
		}
		args := &StackArgs{
			Topology: top, Config: cfg, Stack: st,
			DockerProvider: prov,
			ExternalIPs:    ips,
			ACMEDNSToken:   config.RequireSecret(ctx, KeyCloudflareToken),
			Build:          &ImageBuildArgs{RepoRoot: "..", NodeServiceAccount: pulumi.String("nodes@mock-project.iam.gserviceaccount.com")},
		}
		if mutate != nil {
			mutate(args)
		}
		d, err := NewStack(ctx, "stack", args)
		if out != nil {
			*out = d
		}
		return err
	}
}

func run(t *testing.T, stack string, cfg map[string]string, mutate func(*StackArgs)) (*pulumitest.Mocks, error) {
	t.Helper()
	m := pulumitest.NewMocks()
	// What sfu-image.sh prints after a push: the repo digest.
	m.OnResource(tCommand, func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		image := args.Inputs["environment"].ObjectValue()["IMAGE"].StringValue()
		outs["stdout"] = resource.NewStringProperty("\n" + strings.SplitN(image, ":", 2)[0] + "@sha256:" + strings.Repeat("ab", 32) + "\n")
		return outs, nil
	})
	err := pulumitest.RunWith(t, m, pulumitest.ProjectName(t), stack, cfg, program(mutate))
	return m, err
}

func stackConfig(t *testing.T, stack string) map[string]string {
	return pulumitest.With(pulumitest.StackConfig(t, stack), KeyCloudflareToken, pulumitest.SecretPlaceholder)
}

func TestDeployEveryService(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			m, err := run(t, stack, stackConfig(t, stack), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, st := load(t, stack)
			netIDs := map[string]string{}
			for _, n := range st.Networks {
				r := m.MustGet(t, tNetwork, "stack-net-"+n.Name)
				netIDs[n.Name] = r.ID
				if got := r.InputString("name"); got != st.FullName(n.Name) {
					t.Errorf("network %s name = %q", n.Name, got)
				}
				if got := r.InputString("driver"); got != "overlay" {
					t.Errorf("network %s driver = %q", n.Name, got)
				}
				if got := r.InputString(`options["com.docker.network.driver.mtu"]`); got != "1500" {
					t.Errorf("network %s mtu option = %q, want the VPC MTU 1500", n.Name, got)
				}
			}
			secretIDs := map[string]string{}
			for _, s := range st.Secrets {
				r := m.MustGet(t, tSecret, "stack-secret-"+s.Name)
				secretIDs[s.Name] = r.ID
				if !r.IsSecretInput("data") {
					t.Errorf("docker secret %s: data is not a Pulumi secret", s.Name)
				}
			}
			if n := len(m.ByType(tService)); n != len(st.Services) {
				t.Errorf("%d docker services registered, want %d", n, len(st.Services))
			}
			for _, s := range st.Services {
				r := m.MustGet(t, tService, "stack-svc-"+s.Name)
				in := r.InputMap()
				if got := r.InputString("name"); got != st.FullName(s.Name) {
					t.Errorf("%s: name = %q", s.Name, got)
				}
				wantImage := s.Image
				if s.Build {
					wantImage = strings.TrimSpace(m.MustGet(t, tCommand, "stack-"+s.Name+"-image").OutputString("stdout"))
				}
				if got := r.InputString("taskSpec.containerSpec.image"); got != wantImage || got == "" {
					t.Errorf("%s: image = %q, want %q", s.Name, got, wantImage)
				}
				if got := r.InputString("mode.replicated.replicas"); got != fmt.Sprint(s.Replicas) {
					t.Errorf("%s: replicas = %q, want %d", s.Name, got, s.Replicas)
				}
				if got := fmt.Sprint(dig(in, "taskSpec", "placement", "constraints")); got != fmt.Sprint(anyList(s.Constraints)) {
					t.Errorf("%s: constraints = %v, want %v", s.Name, got, s.Constraints)
				}
				var gotNets []string
				for _, n := range list(dig(in, "taskSpec", "networksAdvanceds")) {
					gotNets = append(gotNets, fmt.Sprint(n.(map[string]any)["name"]))
				}
				var wantNets []string
				for _, n := range s.Networks {
					wantNets = append(wantNets, netIDs[n]) // by ID, never by name (pulumi-docker#233)
				}
				if fmt.Sprint(gotNets) != fmt.Sprint(wantNets) {
					t.Errorf("%s: networks = %v, want network IDs %v", s.Name, gotNets, wantNets)
				}
				labels := map[string]string{}
				for _, l := range list(in["labels"]) {
					lm := l.(map[string]any)
					labels[lm["label"].(string)] = lm["value"].(string)
				}
				for k, v := range s.ServiceLabels {
					if labels[k] != v {
						t.Errorf("%s: service label %s = %q, want %q", s.Name, k, labels[k], v)
					}
				}
				for _, l := range list(dig(in, "taskSpec", "containerSpec", "labels")) {
					if k := l.(map[string]any)["label"].(string); strings.HasPrefix(k, "traefik.") {
						t.Errorf("%s: Traefik label %s is a container label", s.Name, k)
					}
				}
				for _, ref := range list(dig(in, "taskSpec", "containerSpec", "secrets")) {
					rm := ref.(map[string]any)
					file := strings.TrimPrefix(rm["fileName"].(string), "/run/secrets/")
					var want string
					for _, sr := range s.Secrets {
						if sr.File == file {
							want = secretIDs[sr.Secret]
						}
					}
					if rm["secretId"] != want || want == "" {
						t.Errorf("%s: secret file %s from secret id %v, want %q", s.Name, file, rm["secretId"], want)
					}
				}
				if len(list(dig(in, "taskSpec", "containerSpec", "secrets"))) != len(s.Secrets) {
					t.Errorf("%s: %d secrets mounted, want %d", s.Name, len(list(dig(in, "taskSpec", "containerSpec", "secrets"))), len(s.Secrets))
				}
				if dig(in, "convergeConfig", "timeout") == nil {
					t.Errorf("%s: no convergeConfig", s.Name)
				}
				if got := r.InputString("updateConfig.order"); got != s.Update.Order {
					t.Errorf("%s: update order %q, want %q", s.Name, got, s.Update.Order)
				}
				if r.Provider == "" || !strings.Contains(r.Provider, "swarm") {
					t.Errorf("%s: provider %q is not the swarm provider", s.Name, r.Provider)
				}
			}
		})
	}
}

// TestDeploySFU checks what the SFU needs on the media node: host-mode
// ports only, the announced IP equal to the media node's external address
// output, auth on, secrets shared with api and coturn, stop-first.
func TestDeploySFU(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			m, err := run(t, stack, stackConfig(t, stack), nil)
			if err != nil {
				t.Fatal(err)
			}
			top, _ := load(t, stack)
			media := top.Config.MediaNode
			addr := m.MustGet(t, tAddress, media+"-ip").OutputString("address")
			sfu := m.MustGet(t, tService, "stack-svc-sfu")
			env := func(k string) string { return sfu.InputString("taskSpec.containerSpec.env." + k) }
			if addr == "" || env("SFU_PUBLIC_IP") != addr {
				t.Errorf("SFU_PUBLIC_IP = %q, want the media node's external address %q", env("SFU_PUBLIC_IP"), addr)
			}
			if got := m.MustGet(t, tService, "stack-svc-coturn").InputString("taskSpec.containerSpec.env.TURN_EXTERNAL_IP"); got != addr {
				t.Errorf("coturn external IP = %q, want %q", got, addr)
			}
			wantEnv := map[string]string{
				"SFU_ALLOW_ANONYMOUS":  "false",
				"SFU_LISTEN":           ":8080",
				"SFU_TLS_LISTEN":       fmt.Sprintf(":%d", top.Config.SignallingPort),
				"SFU_ICE_UDP_PORT":     fmt.Sprint(top.Config.MediaPorts.From),
				"SFU_ICE_TCP_PORT":     fmt.Sprint(top.Config.MediaPorts.From),
				"SFU_ICE_BIND":         "auto", // host-mode ports deliver to the default route's address
				"SFU_JWT_SECRET_FILE":  "/run/secrets/sfu_jwt_secret",
				"SFU_JWT_ISSUER":       "jbcalling-api",
				"SFU_METRICS_LISTEN":   ":9090", // /metrics off the public listeners
				"SFU_TURN_SECRET_FILE": "/run/secrets/turn_secret",
				"SFU_TLS_CERT":         "/run/secrets/sfu_tls_cert",
				"SFU_TLS_KEY":          "/run/secrets/sfu_tls_key",
			}
			for k, v := range wantEnv {
				if env(k) != v {
					t.Errorf("%s = %q, want %q", k, env(k), v)
				}
			}
			ports := list(dig(sfu.InputMap(), "endpointSpec", "ports"))
			want := map[string]bool{
				fmt.Sprintf("%d/tcp", top.Config.SignallingPort):  false,
				fmt.Sprintf("%d/udp", top.Config.MediaPorts.From): false,
				fmt.Sprintf("%d/tcp", top.Config.MediaPorts.From): false,
			}
			for _, p := range ports {
				pm := p.(map[string]any)
				key := fmt.Sprintf("%v/%v", pm["publishedPort"], pm["protocol"])
				if pm["publishMode"] != "host" {
					t.Errorf("SFU port %s published in mode %v, want host (never the ingress mesh)", key, pm["publishMode"])
				}
				if _, ok := want[key]; !ok {
					t.Errorf("unexpected SFU port %s", key)
				}
				want[key] = true
			}
			for k, seen := range want {
				if !seen {
					t.Errorf("SFU port %s not published", k)
				}
			}
			if got := sfu.InputString("updateConfig.order"); got != StopFirst {
				t.Errorf("SFU update order %q, want stop-first", got)
			}
			// The SFU's join-token secret, which api has to mint tokens and
			// which is not api's own session secret; one TURN secret for
			// coturn and SFU.
			secretOf := func(svc, file string) any {
				for _, s := range list(dig(m.MustGet(t, tService, "stack-svc-"+svc).InputMap(), "taskSpec", "containerSpec", "secrets")) {
					if sm := s.(map[string]any); sm["fileName"] == "/run/secrets/"+file {
						return sm["secretId"]
					}
				}
				return nil
			}
			if a, b := secretOf("api", "sfu_jwt_secret"), secretOf("sfu", "sfu_jwt_secret"); a == nil || a != b {
				t.Errorf("api and sfu join-token secrets differ: %v vs %v", a, b)
			}
			if s := secretOf("sfu", "jwt_secret"); s != nil || secretOf("api", "jwt_secret") == secretOf("api", "sfu_jwt_secret") {
				t.Errorf("the SFU holds api's session secret, or it is the join-token secret")
			}
			for _, proxy := range []string{"173.245.48.0/20", "2606:4700::/32", "10.200.0.0/16"} {
				if !strings.Contains(env("SFU_TRUSTED_PROXIES"), proxy) {
					t.Errorf("SFU_TRUSTED_PROXIES %q lacks %s", env("SFU_TRUSTED_PROXIES"), proxy)
				}
			}
			if a, b := secretOf("coturn", "turn_secret"), secretOf("sfu", "turn_secret"); a == nil || a != b {
				t.Errorf("coturn and sfu TURN secrets differ: %v vs %v", a, b)
			}
			cert := m.MustGet(t, "cloudflare:index/originCaCertificate:OriginCaCertificate", "stack-sfu_tls_cert")
			if got := fmt.Sprint(cert.InputMap()["hostnames"]); got != fmt.Sprintf("[%s]", top.Config.Hostname("webrtc")) {
				t.Errorf("origin certificate hostnames = %s", got)
			}
			if cert.InputString("minDaysForRenewal") == "" {
				t.Error("origin certificate has no minDaysForRenewal: it would never renew by itself")
			}
		})
	}
}

func TestDeployBuildsAndPushesSFU(t *testing.T) {
	m, err := run(t, "prod", stackConfig(t, "prod"), nil)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := SourceHash("..", "sfu")
	if err != nil {
		t.Fatal(err)
	}
	build := m.MustGet(t, tCommand, "stack-sfu-image")
	if got := fmt.Sprint(build.InputMap()["triggers"]); got != "["+hash+"]" {
		t.Errorf("build triggers = %s, want the sfu/ source hash", got)
	}
	script := build.InputString("create")
	for _, want := range []string{"CGO_ENABLED=0", "go build", "./sfu/cmd/sfu", "docker build", "docker push"} {
		if !strings.Contains(script, want) {
			t.Errorf("build script lacks %q", want)
		}
	}
	image := build.InputString("environment.IMAGE")
	if !strings.HasPrefix(image, "asia-southeast1-docker.pkg.dev/replace-me-gcp-project/prod-images/sfu:") || !strings.HasSuffix(image, ":"+hash[:16]) {
		t.Errorf("IMAGE = %q: want the declared Artifact Registry repo, tagged with the source hash", image)
	}
	if !build.IsSecretInput("environment.REGISTRY_TOKEN") {
		t.Error("the registry token is not a secret")
	}
	if build.InputString("environment.REPO_ROOT") != ".." {
		t.Errorf("REPO_ROOT = %q, want the repository root relative to the working directory", build.InputString("environment.REPO_ROOT"))
	}
	repo := m.MustGet(t, "gcp:artifactregistry/repository:Repository", "stack-images")
	if repo.InputString("format") != "DOCKER" || repo.InputString("repositoryId") != "prod-images" {
		t.Errorf("repository = %v", repo.InputMap())
	}
	iam := m.MustGet(t, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember", "stack-images-reader")
	if iam.InputString("role") != "roles/artifactregistry.reader" || iam.InputString("member") != "serviceAccount:nodes@mock-project.iam.gserviceaccount.com" {
		t.Errorf("reader IAM = %s %s", iam.InputString("role"), iam.InputString("member"))
	}
	if !build.DependsOn(iam.URN) {
		t.Error("the push does not wait for the nodes' read access")
	}
	// Workers pull with the auth the service spec carries: a key of the
	// nodes' service account, as a secret.
	key := m.MustGet(t, "gcp:serviceaccount/key:Key", "stack-images-puller")
	if key.InputString("serviceAccountId") != "nodes@mock-project.iam.gserviceaccount.com" {
		t.Errorf("puller key for %q, want the nodes' service account", key.InputString("serviceAccountId"))
	}
	sfuSvc := m.MustGet(t, tService, "stack-svc-sfu")
	if sfuSvc.InputString("auth.serverAddress") != "asia-southeast1-docker.pkg.dev" || sfuSvc.InputString("auth.username") != "_json_key" {
		t.Errorf("SFU service auth = %v", sfuSvc.InputMap()["auth"])
	}
	if !sfuSvc.IsSecretInput("auth.password") {
		t.Error("the SFU service's registry password is not a secret")
	}
	if got := m.MustGet(t, tService, "stack-svc-frontend").InputMap()["auth"]; got != nil {
		t.Errorf("frontend carries registry auth %v; only the SFU's image is private", got)
	}
	want := strings.TrimSuffix(image, ":"+hash[:16]) + "@sha256:" + strings.Repeat("ab", 32)
	if got := m.MustGet(t, tService, "stack-svc-sfu").InputString("taskSpec.containerSpec.image"); got != want {
		t.Errorf("SFU runs %q, want the pushed repo digest %q", got, want)
	}

	// The agent's image: built the same way from agent/ and sfu/, its cgo
	// binary in a Debian 12 container like the image's base.
	agentHash, err := SourceHash("..", "agent")
	if err != nil {
		t.Fatal(err)
	}
	ab := m.MustGet(t, tCommand, "stack-agent-image")
	if got := fmt.Sprint(ab.InputMap()["triggers"]); got != "["+agentHash+"]" {
		t.Errorf("agent build triggers = %s, want the agent/ and sfu/ source hash", got)
	}
	for _, want := range []string{"golang:1.26-bookworm", "libopus-dev", "./agent/cmd/agent", "-f agent/Dockerfile", "docker push"} {
		if !strings.Contains(ab.InputString("create"), want) {
			t.Errorf("agent build script lacks %q", want)
		}
	}
	if img := ab.InputString("environment.IMAGE"); !strings.HasSuffix(img, "/prod-images/agent:"+agentHash[:16]) {
		t.Errorf("agent IMAGE = %q", img)
	}
	agentSvc := m.MustGet(t, tService, "stack-svc-agent")
	if !agentSvc.IsSecretInput("auth.password") || !ab.DependsOn(iam.URN) {
		t.Error("the agent's image is pulled without the service's secret registry auth, or pushed before the nodes may read it")
	}
}

func TestImageScriptsShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed (.ci/run installs it); not linting the image build scripts")
	}
	for _, f := range []string{"sfu-image.sh", "agent-image.sh"} {
		if out, err := exec.Command(sc, f).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", f, err, out)
		}
	}
}

// Prebuilt SFU and agent images (platform:sfuImage, platform:agentImage)
// skip the build and push entirely; one of them alone builds the other.
func TestDeployPrebuiltImages(t *testing.T) {
	cfg := pulumitest.With(pulumitest.With(stackConfig(t, "staging"), "platform:sfuImage", "sfu:local-proof"), "platform:agentImage", "agent:local-proof")
	m, err := run(t, "staging", cfg, func(a *StackArgs) { a.Build = nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{tCommand, "gcp:artifactregistry/repository:Repository", "gcp:serviceaccount/key:Key"} {
		if n := len(m.ByType(typ)); n != 0 {
			t.Errorf("%d %s registered with prebuilt images", n, typ)
		}
	}
	for svc, want := range map[string]string{"sfu": "sfu:local-proof", "agent": "agent:local-proof"} {
		r := m.MustGet(t, tService, "stack-svc-"+svc)
		if got := r.InputString("taskSpec.containerSpec.image"); got != want {
			t.Errorf("%s image = %q, want %q", svc, got, want)
		}
		if r.InputMap()["auth"] != nil {
			t.Errorf("%s carries registry auth for a prebuilt image", svc)
		}
	}

	m, err = run(t, "staging", pulumitest.With(stackConfig(t, "staging"), "platform:sfuImage", "sfu:local-proof"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.ByType(tCommand)); n != 1 {
		t.Errorf("%d image builds, want the agent's alone", n)
	}
	m.MustGet(t, tCommand, "stack-agent-image")
}

// Bad stack config or an invalid stack fails before any resource exists.
func TestBadStackRegistersNothing(t *testing.T) {
	cases := []struct {
		name   string
		cfg    func(t *testing.T) map[string]string
		mutate func(*StackArgs)
		want   string
	}{
		{"bad replicas key", func(t *testing.T) map[string]string {
			return pulumitest.With(stackConfig(t, "prod"), "platform:replicas", `{"sfu":3}`)
		}, nil, `platform:replicas: service "sfu" cannot be scaled`},
		{"ICE port outside media range", func(t *testing.T) map[string]string {
			return pulumitest.With(stackConfig(t, "prod"), "platform:sfuIceUdpPort", "50000")
		}, nil, "platform:sfuIceUdpPort"},
		{"invalid stack handed to NewStack", func(t *testing.T) map[string]string { return stackConfig(t, "prod") },
			func(a *StackArgs) {
				a.Stack.Service("frontend").Constraints = []string{"node.labels.instance == nowhere"}
			},
			"service frontend: no declared node satisfies"},
		{"no external IP for the media node", func(t *testing.T) map[string]string { return stackConfig(t, "prod") },
			func(a *StackArgs) { delete(a.ExternalIPs, a.Config.Cluster.MediaNode) },
			"service coturn: TURN_EXTERNAL_IP needs the external IP of node translation02"},
		{"image build without the nodes' service account", func(t *testing.T) map[string]string { return stackConfig(t, "prod") },
			func(a *StackArgs) { a.Build.NodeServiceAccount = nil },
			"Build.NodeServiceAccount is required"},
		{"image build outside a checkout", func(t *testing.T) map[string]string { return stackConfig(t, "prod") },
			func(a *StackArgs) { a.Build.RepoRoot = "/" },
			"image build: no go.mod at or above /"},
		{"unknown secret kind", func(t *testing.T) map[string]string { return stackConfig(t, "prod") },
			func(a *StackArgs) { a.Stack.Secrets = append(a.Stack.Secrets, Secret{Name: "vault", Kind: "vault"}) },
			`secret vault: no value source for kind "vault"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := run(t, "prod", tc.cfg(t), tc.mutate)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			for _, r := range m.Resources() {
				// The test program itself declares the docker provider and
				// the addresses; nothing of the stack may exist.
				if r.Type == "pulumi:pulumi:Stack" || r.Type == "pulumi:providers:docker" || r.Type == tAddress {
					continue
				}
				t.Errorf("%s %s registered although the stack is invalid", r.Type, r.Name)
			}
		})
	}
}

func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func anyList(xs []string) []any {
	out := []any{}
	for _, x := range xs {
		out = append(out, x)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// The smoke test signs join tokens with the JWTSecret output: it must be the
// value the SFU's sfu_jwt_secret docker secret carries, and secret in state.
func TestJWTSecretOutputIsTheSFUsSecret(t *testing.T) {
	var d *Deployment
	m := pulumitest.NewMocks()
	m.OnResource(tCommand, func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		outs["stdout"] = resource.NewStringProperty("registry/sfu@sha256:" + strings.Repeat("ab", 32) + "\n")
		return outs, nil
	})
	if err := pulumitest.RunWith(t, m, pulumitest.ProjectName(t), "staging", stackConfig(t, "staging"), programInto(nil, &d)); err != nil {
		t.Fatal(err)
	}
	value, known, secret := pulumitest.AwaitString(t, d.JWTSecret)
	if !known || !secret || value == "" {
		t.Fatalf("JWTSecret known=%v secret=%v empty=%v; want a known secret value", known, secret, value == "")
	}
	data, _, _ := pulumitest.AwaitString(t, d.Secrets["sfu_jwt_secret"].Data)
	if got, err := base64.StdEncoding.DecodeString(data); err != nil || string(got) != value {
		t.Errorf("sfu_jwt_secret docker secret carries %q (%v), not the exported JWTSecret", got, err)
	}
}

// Every value the stack declares is in the form the docker provider reads
// back, or a second `pulumi up` would change (or replace) it: durations as
// the provider prints them ("1m", never "60s"), secret and config files
// with explicit owner and mode, ports with their protocol and mode, and
// networks that declare the VXLAN ID the daemon would otherwise add.
func TestDeclaredValuesInTheProvidersForm(t *testing.T) {
	m, err := run(t, "prod", stackConfig(t, "prod"), nil)
	if err != nil {
		t.Fatal(err)
	}
	canonical := func(v string) bool {
		// What the provider reads back: Go's Duration.String() with a
		// trailing "m0s" or "h0m" cut, the way terraform-provider-docker
		// flattens service durations (shortDur).
		d, err := time.ParseDuration(v)
		if err != nil {
			return false
		}
		s := d.String()
		if strings.HasSuffix(s, "m0s") {
			s = s[:len(s)-2]
		}
		if strings.HasSuffix(s, "h0m") {
			s = s[:len(s)-2]
		}
		return v == s
	}
	for _, r := range m.ByType(tService) {
		for _, path := range []string{
			"updateConfig.delay", "updateConfig.monitor", "rollbackConfig.delay", "rollbackConfig.monitor",
			"taskSpec.restartPolicy.delay", "taskSpec.restartPolicy.window", "taskSpec.containerSpec.stopGracePeriod",
			"taskSpec.containerSpec.healthcheck.interval", "taskSpec.containerSpec.healthcheck.timeout",
			"taskSpec.containerSpec.healthcheck.startPeriod", "convergeConfig.delay", "convergeConfig.timeout",
		} {
			if v := r.InputString(path); v != "" && !canonical(v) {
				t.Errorf("%s %s = %q: the provider reads it back in another form", r.Name, path, v)
			}
		}
		for _, s := range list(dig(r.InputMap(), "taskSpec", "containerSpec", "secrets")) {
			sm := s.(map[string]any)
			if sm["fileUid"] == nil || sm["fileGid"] == nil || sm["fileMode"] == nil {
				t.Errorf("%s: secret %v without explicit owner and mode", r.Name, sm["fileName"])
			}
		}
		for _, mt := range list(dig(r.InputMap(), "taskSpec", "containerSpec", "mounts")) {
			// The provider panics on tmpfs options (it converts their size
			// to int64 from an int) and reads their mode back wrong.
			if mm := mt.(map[string]any); mm["tmpfsOptions"] != nil {
				t.Errorf("%s: mount %v declares tmpfs options", r.Name, mm["target"])
			}
		}
		for _, p := range list(dig(r.InputMap(), "endpointSpec", "ports")) {
			pm := p.(map[string]any)
			if pm["protocol"] == nil || pm["publishMode"] == nil {
				t.Errorf("%s: port %v without explicit protocol and publish mode", r.Name, pm["publishedPort"])
			}
		}
	}
	ids := map[string]string{}
	for _, r := range m.ByType(tNetwork) {
		id := r.InputString(`options["com.docker.network.driver.overlay.vxlanid_list"]`)
		if n, err := strconv.Atoi(id); err != nil || n < FirstVXLANID || ids[id] != "" {
			t.Errorf("network %s: VXLAN ID %q: want a declared one of its own, from %d", r.Name, id, FirstVXLANID)
		}
		ids[id] = r.Name
	}
}

// A swarm no Cloudflare proxy fronts gets self-signed origin certificates
// from the tls provider: no Cloudflare resource, the declared hostnames.
func TestSelfSignedCertificates(t *testing.T) {
	m, err := run(t, "staging", stackConfig(t, "staging"), func(a *StackArgs) { a.SelfSignedCertificates = true })
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.ByType("cloudflare:index/originCaCertificate:OriginCaCertificate")); n != 0 {
		t.Fatalf("%d Cloudflare origin certificates registered", n)
	}
	certs := m.ByType("tls:index/selfSignedCert:SelfSignedCert")
	if len(certs) != 1 || !strings.Contains(fmt.Sprint(certs[0].InputMap()["dnsNames"]), "staging-webrtc.jbcalling.site") {
		t.Fatalf("self-signed certificates: %+v", certs)
	}
}
