package stacks

import (
	"maps"
	"slices"
	"testing"
)

// TestTraefikLabels pins the exact service labels Traefik v3's Swarm
// provider needs for each kind of route in the real prod catalog.
func TestTraefikLabels(t *testing.T) {
	_, st := load(t, "prod")
	cases := []struct {
		service string
		want    map[string]string
	}{
		{"api", map[string]string{ // two networks: the network label is required
			"traefik.enable":                                          "true",
			"traefik.http.routers.api.rule":                           "Host(`api.jbcalling.site`)",
			"traefik.http.routers.api.entrypoints":                    "websecure",
			"traefik.http.routers.api.tls":                            "true",
			"traefik.http.routers.api.tls.certresolver":               "le",
			"traefik.http.routers.api.service":                        "api-8000",
			"traefik.http.services.api-8000.loadbalancer.server.port": "8000",
			"traefik.docker.network":                                  "translation_edge",
		}},
		{"frontend", map[string]string{ // one network: no network label
			"traefik.enable":                                             "true",
			"traefik.http.routers.frontend.rule":                         "(Host(`jbcalling.site`) || Host(`www.jbcalling.site`))",
			"traefik.http.routers.frontend.entrypoints":                  "websecure",
			"traefik.http.routers.frontend.tls":                          "true",
			"traefik.http.routers.frontend.tls.certresolver":             "le",
			"traefik.http.routers.frontend.service":                      "frontend-80",
			"traefik.http.services.frontend-80.loadbalancer.server.port": "80",
		}},
		{"sfu", map[string]string{ // same-origin client under /sfu, prefix stripped
			"traefik.enable":                                          "true",
			"traefik.http.routers.sfu.rule":                           "Host(`jbcalling.site`) && PathPrefix(`/sfu`)",
			"traefik.http.routers.sfu.entrypoints":                    "websecure",
			"traefik.http.routers.sfu.tls":                            "true",
			"traefik.http.routers.sfu.tls.certresolver":               "le",
			"traefik.http.routers.sfu.middlewares":                    "sfu-strip",
			"traefik.http.routers.sfu.priority":                       "90",
			"traefik.http.routers.sfu.service":                        "sfu-8080",
			"traefik.http.services.sfu-8080.loadbalancer.server.port": "8080",
			"traefik.http.middlewares.sfu-strip.stripprefix.prefixes": "/sfu",
			// On the monitoring network too: Traefik must take the edge one.
			"traefik.docker.network": "translation_edge",
		}},
		{"traefik", map[string]string{ // dashboard: internal service, dummy port, basic auth
			"traefik.enable":                                              "true",
			"traefik.http.routers.dashboard.rule":                         "Host(`jbcalling.site`) && (PathPrefix(`/dashboard`) || PathPrefix(`/api`))",
			"traefik.http.routers.dashboard.entrypoints":                  "websecure",
			"traefik.http.routers.dashboard.tls":                          "true",
			"traefik.http.routers.dashboard.tls.certresolver":             "le",
			"traefik.http.routers.dashboard.middlewares":                  "dashboard-auth",
			"traefik.http.routers.dashboard.priority":                     "100",
			"traefik.http.routers.dashboard.service":                      "api@internal",
			"traefik.http.services.traefik-9999.loadbalancer.server.port": "9999",
			"traefik.http.middlewares.dashboard-auth.basicauth.usersfile": "/run/secrets/dashboard_users",
			"traefik.docker.network":                                      "translation_edge",
		}},
		{"stt", nil}, // not routed: no labels at all
	}
	for _, tc := range cases {
		t.Run(tc.service, func(t *testing.T) {
			got := svc(t, st, tc.service).ServiceLabels
			if !maps.Equal(got, tc.want) {
				for _, k := range slices.Sorted(maps.Keys(tc.want)) {
					if got[k] != tc.want[k] {
						t.Errorf("%s = %q, want %q", k, got[k], tc.want[k])
					}
				}
				for _, k := range slices.Sorted(maps.Keys(got)) {
					if _, ok := tc.want[k]; !ok {
						t.Errorf("unexpected label %s=%q", k, got[k])
					}
				}
			}
		})
	}
}

func TestStagingHostnames(t *testing.T) {
	_, st := load(t, "staging")
	if got := svc(t, st, "api").ServiceLabels["traefik.http.routers.api.rule"]; got != "Host(`staging-api.jbcalling.site`)" {
		t.Errorf("staging api rule = %q", got)
	}
	if got := svc(t, st, "sfu").DNSNames; got[0] != "staging-webrtc.jbcalling.site" {
		t.Errorf("staging SFU DNS names = %v", got)
	}
}
