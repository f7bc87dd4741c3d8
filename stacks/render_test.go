package stacks

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	top, st := load(t, "prod")
	svc(t, st, "grafana").Ports = []Port{{Target: 3000, Published: 3000, Protocol: "tcp", Mode: ModeHost}}
	view := Render(top, st)
	for _, want := range []string{
		"| translation02 | worker | e2-custom-8-16384 | 16384 MB | `instance=translation02` `media=true` | prod-cluster, prod-media |",
		"| sfu | `built from sfu/, pushed to Artifact Registry (digest)` | 1 | `node.labels.instance == translation02` | translation02 | edge, monitoring |",
		"| frontend | `jackboun11/jbcalling-frontend:1.0.9` | 3 | anywhere | translation01, translation02, translation03 | edge |",
		"| api.jbcalling.site | / | api:8000 | api |  |",
		"| jbcalling.site | /sfu | sfu:8080 | sfu | sfu-strip |",
		"| sfu | 40000/udp | host | translation02 | translation02: allow-media |",
		"| traefik | 443/tcp | host | translation01 | translation01: allow-web |",
		"| coturn | 40081-40100/udp | host | translation02 | translation02: allow-media |",
		"| grafana | 3000/tcp | host | translation01 | translation01: **none** |",
		"| webrtc.jbcalling.site | A | translation02 | true | sfu |",
		"| jwt_secret | random | api |",
		"| sfu_jwt_secret | random | api, sfu, agent |",
		"| agent | `built from agent/ and sfu/, pushed to Artifact Registry (digest)` | 1 | `node.labels.instance != translation02` | translation01, translation03 | edge, backend |",
		"| translation_edge | overlay | true | 1500 |",
	} {
		if !strings.Contains(view, want) {
			t.Errorf("view lacks %q", want)
		}
	}
}
