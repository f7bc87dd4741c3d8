package stacks

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/internal/pulumitest"
)

func clusterConfig(t *testing.T, stack string) (*infra.Config, map[string]string) {
	t.Helper()
	cfg := pulumitest.StackConfig(t, stack)
	cl, err := infra.ParseConfig(stack, func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cl, cfg
}

func TestConfigDefaultsAndOverrides(t *testing.T) {
	cl, cfg := clusterConfig(t, "prod")
	cfg = pulumitest.With(cfg,
		"platform:images", `{"frontend":"ghcr.io/jbcalling/frontend:2.0.0"}`,
		"platform:replicas", `{"tts":2}`,
		"platform:sfuImage", "registry.local:5000/sfu:dev")
	c, err := ConfigFromMap(cl, func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	st, err := Catalog(infra.Plan(cl), c)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ what, got, want string }{
		{"frontend image", svc(t, st, "frontend").Image, "ghcr.io/jbcalling/frontend:2.0.0"},
		{"api image (default)", svc(t, st, "api").Image, DefaultImages["api"]},
		{"sfu image (prebuilt)", svc(t, st, "sfu").Image, "registry.local:5000/sfu:dev"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if svc(t, st, "sfu").Build {
		t.Error("sfu is marked Build although platform:sfuImage is set")
	}
	if n := svc(t, st, "tts").Replicas; n != 2 {
		t.Errorf("tts replicas = %d, want 2 (override)", n)
	}
	if n := svc(t, st, "stt").Replicas; n != 3 {
		t.Errorf("stt replicas = %d, want default 3", n)
	}
}

func TestConfigRejects(t *testing.T) {
	cases := []struct {
		name string
		kv   []string
		want string
	}{
		{"unknown service image", []string{"platform:images", `{"mediasoup":"x:1"}`}, `platform:images: unknown service "mediasoup"`},
		{"bad image ref", []string{"platform:images", `{"api":"Not An Image"}`}, `platform:images: service "api": "Not An Image" is not an image reference`},
		{"images not an object", []string{"platform:images", `["a"]`}, "platform:images: not an object"},
		{"scaling a singleton", []string{"platform:replicas", `{"traefik":2}`}, `platform:replicas: service "traefik" cannot be scaled`},
		{"negative replicas", []string{"platform:replicas", `{"api":-1}`}, `platform:replicas: service "api": -1 replicas`},
		{"ICE port outside media range", []string{"platform:sfuIceUdpPort", "3478"}, "platform:sfuIceUdpPort: port 3478 is outside the media range 40000-40100"},
		{"ICE port not a number", []string{"platform:sfuIceTcpPort", "x"}, `platform:sfuIceTcpPort: "x" is not an integer`},
		{"TURN port on ICE port", []string{"platform:turnPort", "40000"}, "platform:turnPort: port 40000 is also the SFU's ICE port"},
		{"relay range overlaps", []string{"platform:turnRelayPorts", "100"}, "overlaps coturn's relay ports 40001-40100"},
		{"relay count too big", []string{"platform:turnRelayPorts", "500"}, "platform:turnRelayPorts: 500 is outside 1-100"},
		{"bad prefix", []string{"platform:stackPrefix", "Bad_Prefix"}, `platform:stackPrefix: "Bad_Prefix" is not a docker name prefix`},
		{"bad sfu image", []string{"platform:sfuImage", "UPPER/case"}, `platform:sfuImage: "UPPER/case" is not an image reference`},
		{"bad acme email", []string{"platform:acmeEmail", "nobody"}, `platform:acmeEmail: "nobody" is not an email address`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl, cfg := clusterConfig(t, "prod")
			cfg = pulumitest.With(cfg, tc.kv...)
			_, err := ConfigFromMap(cl, func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestACMEToken(t *testing.T) {
	cases := []struct {
		name    string
		cfg     map[string]string
		env     string
		want    string
		wantErr string
	}{
		{"dedicated key first", map[string]string{KeyACMEToken: "acme", KeyCloudflareToken: "cf"}, "env", "acme", ""},
		{"provider token", map[string]string{KeyCloudflareToken: "cf"}, "env", "cf", ""},
		{"environment", map[string]string{}, "env", "env", ""},
		{"none", map[string]string{}, "", "", "platform:acmeDnsToken: no Cloudflare token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CLOUDFLARE_API_TOKEN", tc.env)
			var got pulumi.StringOutput
			_, err := pulumitest.Run(t, "platform", "prod", tc.cfg, func(ctx *pulumi.Context) error {
				var err error
				got, err = ACMEToken(ctx)
				return err
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			v, _, secret := pulumitest.AwaitString(t, got)
			if v != tc.want || !secret {
				t.Errorf("token = %q (secret %t), want %q as a secret", v, secret, tc.want)
			}
		})
	}
}
