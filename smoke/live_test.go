package smoke

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
)

// TestLive checks a deployed cluster the way a user would. It runs only when
// SMOKE_OUTPUTS names a stack's outputs (the throwaway and deploy workflows
// set it); here, without a cloud, it skips and says so.
func TestLive(t *testing.T) {
	path := os.Getenv(outputsEnv)
	if path == "" {
		t.Skipf("%s is not set, so there is no live cluster to check: run `pulumi stack output --stack <stack> --json --show-secrets > outputs.json` "+
			"and `%s=outputs.json go test ./smoke -run Live -v` (the throwaway and deploy workflows do). "+
			"The checks themselves are unit-tested against local servers and a local SFU in this package.", outputsEnv, outputsEnv)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", outputsEnv, err)
	}
	ctx := context.Background()
	target, err := TargetFromOutputs(ctx, raw, LookupHost, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("frontend %s (%d replicas), api %s, SFU %s, media node %s", target.FrontendURL, target.FrontendReplicas,
		target.APIHealthURL, target.SFUURL, target.MediaIP)
	h := HTTPChecker{Client: http.DefaultClient}

	t.Run("frontend through Traefik on every replica", func(t *testing.T) {
		r, err := h.GetEveryReplica(ctx, target.FrontendURL, target.FrontendReplicas, target.ReplicaHeader)
		if err != nil {
			t.Fatal(err)
		}
		if target.ReplicaHeader != "" {
			t.Logf("%d requests, all 200; replicas by %s: %v", r.Requests, target.ReplicaHeader, r.Seen)
		} else {
			t.Logf("%d requests, all 200 (set %s to prove each replica answered)", r.Requests, replicaHeaderEnv)
		}
	})
	if target.WWWURL != "" {
		t.Run("www", func(t *testing.T) {
			if _, err := h.GetOK(ctx, target.WWWURL); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("api health", func(t *testing.T) {
		if _, err := h.GetOK(ctx, target.APIHealthURL); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SFU health", func(t *testing.T) {
		hl, err := h.SFUHealth(ctx, target.SFUURL)
		if err != nil {
			t.Fatal(err)
		}
		if hl.Status != "ok" {
			t.Fatalf("SFU status %q", hl.Status)
		}
	})
	t.Run("SFU WebSocket upgrade", func(t *testing.T) {
		if err := h.WebSocket(ctx, target.SignallingURL); err != nil {
			t.Fatal(err)
		}
	})
	// UDP first (what browsers use), then TCP (clients behind UDP-blocking
	// networks): both must reach the media node's public address.
	for _, network := range []string{"udp", "tcp"} {
		t.Run("media over ICE-"+network, func(t *testing.T) {
			res, err := MediaCheck{URL: target.SignallingURL, Network: network, ExpectIP: target.MediaIP, Token: target.Token,
				Timeout: 45 * time.Second}.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d packets back in room %s; publisher %v, subscriber %v", res.Received, res.Room, res.Pairs["publisher"], res.Pairs["subscriber"])
		})
	}
}

func TestTargetFromOutputs(t *testing.T) {
	prod, err := os.ReadFile("testdata/outputs-prod.json")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(prod, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	urls := func(m map[string]any) map[string]any { return m["urls"].(map[string]any) }
	dns := map[string][]string{"media.jbcalling.site": {"203.0.113.20"}}
	cases := []struct {
		name    string
		raw     []byte
		dns     map[string][]string
		env     map[string]string
		want    func(t *testing.T, tg Target)
		wantErr string
	}{
		{
			name: "prod outputs", raw: prod, dns: dns,
			want: func(t *testing.T, tg Target) {
				want := Target{
					FrontendURL: "https://jbcalling.site/", WWWURL: "https://www.jbcalling.site/", FrontendReplicas: 3,
					APIHealthURL: "https://api.jbcalling.site/health",
					SFUURL:       "https://webrtc.jbcalling.site:8443", SignallingURL: "wss://webrtc.jbcalling.site:8443/ws",
					MediaIP: "203.0.113.20", JWTSecret: []byte("0123456789abcdef0123456789abcdef"),
				}
				if fmt.Sprint(tg) != fmt.Sprint(want) {
					t.Errorf("target\n got %+v\nwant %+v", tg, want)
				}
			},
		},
		{
			name: "mediaNode output wins over DNS", raw: edit(func(m map[string]any) { m["mediaNode"] = "translation03" }),
			want: func(t *testing.T, tg Target) {
				if tg.MediaIP != "203.0.113.30" {
					t.Errorf("media IP %s, want translation03's 203.0.113.30", tg.MediaIP)
				}
			},
		},
		{
			name: "overrides from the environment", raw: edit(func(m map[string]any) { delete(m, "sfuJwtSecret"); m["frontendReplicas"] = 5 }), dns: dns,
			env: map[string]string{jwtSecretEnv: "from-env", apiHealthPathEnv: "/api/healthz", replicaHeaderEnv: "X-Replica"},
			want: func(t *testing.T, tg Target) {
				if string(tg.JWTSecret) != "from-env" || tg.APIHealthURL != "https://api.jbcalling.site/api/healthz" ||
					tg.ReplicaHeader != "X-Replica" || tg.FrontendReplicas != 5 {
					t.Errorf("target %+v", tg)
				}
			},
		},
		{
			name: "media record proxied by Cloudflare", raw: prod, dns: map[string][]string{"media.jbcalling.site": {"104.21.5.6"}},
			wantErr: "media hostname media.jbcalling.site resolves to [104.21.5.6], none of the nodes' external IPs (translation01=203.0.113.10, translation02=203.0.113.20, translation03=203.0.113.30)",
		},
		{
			name: "media hostname does not resolve", raw: prod, dns: map[string][]string{},
			wantErr: "resolving the media hostname media.jbcalling.site",
		},
		{
			name: "no SFU secret anywhere: only the media checks can fail", raw: edit(func(m map[string]any) { delete(m, "sfuJwtSecret") }), dns: dns,
			want: func(t *testing.T, tg Target) {
				if tg.FrontendURL != "https://jbcalling.site/" {
					t.Errorf("target %+v", tg)
				}
				if _, err := tg.Token("room", "smoke-a"); err == nil || !strings.Contains(err.Error(), "no SFU JWT secret: the stack outputs have no sfuJwtSecret and SMOKE_JWT_SECRET is not set") {
					t.Errorf("token without a secret: %v", err)
				}
			},
		},
		{name: "no frontend URL", raw: edit(func(m map[string]any) { delete(urls(m), "apex") }), wantErr: "urls.apex is missing"},
		{name: "signalling URL not wss", raw: edit(func(m map[string]any) { urls(m)["webrtc"] = "https://webrtc.jbcalling.site" }), wantErr: `urls.webrtc "https://webrtc.jbcalling.site" is not a wss:// URL`},
		{name: "unknown media node", raw: edit(func(m map[string]any) { m["mediaNode"] = "translation09" }), wantErr: `mediaNode "translation09" has no nodes.translation09.externalIp`},
		{name: "not JSON", raw: []byte("Current stack is prod"), wantErr: "stack outputs:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lookup := func(_ context.Context, host string) ([]string, error) {
				if a, ok := c.dns[host]; ok {
					return a, nil
				}
				return nil, fmt.Errorf("lookup %s: no such host", host)
			}
			env := func(k string) string { return c.env[k] }
			tg, err := TargetFromOutputs(context.Background(), c.raw, lookup, env)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.want(t, tg)
		})
	}
}

// TestLiveAgainstALocalCluster runs TestLive itself, in a child process, on
// a stand-in cluster in this namespace: TLS frontend and api servers, and the
// real SFU behind TLS with its ICE muxes on the namespace's address standing
// in for the media node's public IP. It proves the live run's wiring (outputs,
// URLs, tokens, every subtest) and that a broken cluster fails it by name.
func TestLiveAgainstALocalCluster(t *testing.T) {
	netns.Require(t)
	secret := "live-wiring-secret-0123456789abcdef"
	cases := []struct {
		name     string
		frontend http.Handler
		want     []string
	}{
		{
			name:     "healthy cluster",
			frontend: replicaSet(nil),
			want: []string{
				"--- PASS: TestLive/frontend_through_Traefik_on_every_replica",
				"--- PASS: TestLive/www", "--- PASS: TestLive/api_health", "--- PASS: TestLive/SFU_health", "--- PASS: TestLive/SFU_WebSocket_upgrade",
				"--- PASS: TestLive/media_over_ICE-udp", "--- PASS: TestLive/media_over_ICE-tcp", "\nPASS",
			},
		},
		{
			name: "a frontend replica on another node answers 504",
			frontend: replicaSet(func(replica int, w http.ResponseWriter, _ *http.Request) bool {
				if replica == 1 {
					http.Error(w, "Gateway Timeout", http.StatusGatewayTimeout)
				}
				return replica == 1
			}),
			want: []string{
				"--- FAIL: TestLive/frontend_through_Traefik_on_every_replica", "(request 2 of 12): 504 Gateway Timeout",
				"--- PASS: TestLive/media_over_ICE-tcp", "\nFAIL",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frontend := httptest.NewTLSServer(c.frontend)
			defer frontend.Close()
			api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/health" {
					http.NotFound(w, r)
				}
			}))
			defer api.Close()
			sfu := localSFUServer(t, 0, []byte(secret))
			sfuTLS := httptest.NewUnstartedServer(sfu.Handler())
			sfuTLS.StartTLS()
			defer func() { sfuTLS.CloseClientConnections(); sfuTLS.Close() }()

			dir := t.TempDir()
			// Every httptest TLS server uses the same certificate: trusting it
			// as the "system" root makes the child verify TLS as in the cloud.
			roots := filepath.Join(dir, "roots.pem")
			if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: frontend.Certificate().Raw}), 0o600); err != nil {
				t.Fatal(err)
			}
			outputs, _ := json.Marshal(map[string]any{
				"nodes": map[string]any{
					"edge":  map[string]string{"externalIp": "127.0.0.1", "internalIp": "127.0.0.1", "role": "manager"},
					"media": map[string]string{"externalIp": netns.Addr, "internalIp": netns.Addr, "role": "worker"},
				},
				"mediaNode": "media",
				"urls": map[string]string{
					"apex":   frontend.URL,
					"www":    frontend.URL,
					"api":    api.URL,
					"webrtc": "wss" + strings.TrimPrefix(sfuTLS.URL, "https"),
					"media":  netns.Addr,
				},
				"sfuJwtSecret": secret,
			})
			outFile := filepath.Join(dir, "outputs.json")
			if err := os.WriteFile(outFile, outputs, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run", "^TestLive$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), outputsEnv+"="+outFile, "SSL_CERT_FILE="+roots)
			out, _ := cmd.CombinedOutput()
			for _, want := range c.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("live run output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(string(out), secret) {
				t.Errorf("the live run printed the JWT secret:\n%s", out)
			}
		})
	}
}
