// Package offline previews the whole Pulumi program, prod and staging,
// with the real engine and all seven real provider plugins, in a network
// namespace with only loopback: no cloud is reachable, and the preview
// must still succeed (the providers' own checks run, which mocks never
// do) and plan exactly the resources the mocked tests see.
package offline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/jbcalling/platform/program"
	"github.com/jbcalling/platform/program/programtest"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

func TestMain(m *testing.M) { netns.MainLoopback(m) }

func TestOfflinePreview(t *testing.T) {
	netns.Require(t)
	eng := pulumitest.RealEngine(t, "gcp", "cloudflare", "docker", "random", "tls", "command")
	token := make([]byte, 20)
	_, _ = rand.Read(token)
	// Credentials of the right shape that nothing can check here; the
	// Cloudflare token as an operator sets it, a secret in the stack.
	// Every HTTPS request goes to a proxy that refuses it: with no route
	// at all the GCP provider takes an unreachable DNS server for a
	// passing fault and retries its identity lookup for five minutes.
	proxy := refusingProxy(t)
	eng = eng.WithEnv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.offline-preview-fake-token",
		"HTTPS_PROXY", proxy.url, "HTTP_PROXY", proxy.url, "NO_PROXY", "127.0.0.1,localhost")
	defer func() { t.Logf("what the providers tried to reach (refused): %v", proxy.tried()) }()
	const tokenKey = "cloudflare:apiToken"
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			cfg := pulumitest.With(pulumitest.StackConfig(t, stack), tokenKey, hex.EncodeToString(token))
			// What the mocked tests register, by type and name.
			m := programtest.Mocks()
			if err := pulumitest.RunWith(t, m, pulumitest.ProjectName(t), stack, cfg, program.Run); err != nil {
				t.Fatalf("under mocks: %v", err)
			}
			var want []string
			for _, r := range m.Resources() {
				if !r.Read && r.Type != "pulumi:pulumi:Stack" {
					want = append(want, r.Type+" "+r.Name)
				}
			}

			s := eng.Stack(t, stack, program.Run, cfg, tokenKey)
			var got []string
			evs := make(chan events.EngineEvent)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for e := range evs {
					if p := e.ResourcePreEvent; p != nil && p.Metadata.Op == apitype.OpCreate {
						parts := strings.Split(p.Metadata.URN, "::")
						got = append(got, p.Metadata.Type+" "+parts[len(parts)-1])
					}
				}
			}()
			var out strings.Builder
			res, err := s.Preview(context.Background(), optpreview.EventStreams(evs), optpreview.ProgressStreams(&out))
			<-done
			if err != nil {
				t.Fatalf("preview: %v\n%s", err, out.String())
			}
			t.Logf("%s preview: %v", stack, res.ChangeSummary)
			slices.Sort(want)
			slices.Sort(got)
			// The stack itself and the default providers are the engine's.
			got = slices.DeleteFunc(got, func(s string) bool {
				typ, name, _ := strings.Cut(s, " ")
				return typ == "pulumi:pulumi:Stack" || strings.HasPrefix(typ, "pulumi:providers:") && strings.HasPrefix(name, "default")
			})
			if !slices.Equal(got, want) {
				for _, w := range want {
					if !slices.Contains(got, w) {
						t.Errorf("the mocks register %s; the real preview does not plan it", w)
					}
				}
				for _, g := range got {
					if !slices.Contains(want, g) {
						t.Errorf("the real preview plans %s; the mocks do not register it", g)
					}
				}
			}
			if n := res.ChangeSummary[apitype.OpCreate]; n < len(want) {
				t.Errorf("the preview plans %d creates for %d resources", n, len(want))
			}
		})
	}
}

// proxy answers every request, CONNECT included, with 403 and records
// the hosts asked for.
type proxy struct {
	url   string
	mu    sync.Mutex
	hosts map[string]bool
}

func refusingProxy(t *testing.T) *proxy {
	p := &proxy{hosts: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.hosts[r.Host] = true
		p.mu.Unlock()
		http.Error(w, "offline: no cloud here", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *proxy) tried() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.hosts))
}
