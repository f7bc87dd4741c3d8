package stacks

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEnvMatchesTheFlags keeps the stack's SFU_* and AGENT_* variables in
// step with the flags the programs actually define (each flag reads
// <PREFIX>_<FLAG>): a renamed flag would otherwise be silently ignored in
// production.
func TestEnvMatchesTheFlags(t *testing.T) {
	for _, c := range []struct{ service, main, prefix string }{
		{"sfu", "../sfu/cmd/sfu/main.go", "SFU_"},
		{"agent", "../agent/cmd/agent/main.go", "AGENT_"},
	} {
		src, err := os.ReadFile(c.main)
		if err != nil {
			t.Fatalf("%s: %v", c.service, err)
		}
		flags := map[string]bool{}
		for _, m := range regexp.MustCompile(`fs\.\w*Var\(&[\w.]+, "([a-z0-9-]+)"`).FindAllStringSubmatch(string(src), -1) {
			flags[c.prefix+strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))] = true
		}
		if len(flags) < 5 {
			t.Fatalf("found only %d flags in %s; the pattern no longer matches", len(flags), c.main)
		}
		for _, stack := range []string{"prod", "staging"} {
			_, st := load(t, stack)
			s := svc(t, st, c.service)
			for k := range s.Env {
				if !flags[k] {
					t.Errorf("%s: %s env %s matches no flag of %s", stack, c.service, k, c.main)
				}
			}
			for k := range s.ExternalIPEnv {
				if !flags[k] {
					t.Errorf("%s: %s env %s matches no flag of %s", stack, c.service, k, c.main)
				}
			}
		}
	}
	for _, stack := range []string{"prod", "staging"} {
		_, st := load(t, stack)
		if svc(t, st, "sfu").Env["SFU_ALLOW_ANONYMOUS"] != "false" {
			t.Errorf("%s: the stack must set SFU_ALLOW_ANONYMOUS=false", stack)
		}
	}
}

// TestSeedIntent: prod and staging reproduce what the hand-run cluster
// settled on: frontend and signaling spread with no constraint (the 504 fix), SFU
// and coturn pinned to the media node, Traefik pinned to the edge node that
// holds acme.json, one Traefik replica.
func TestSeedIntent(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		top, st := load(t, stack)
		cl := top.Config
		cases := []struct {
			service     string
			replicas    int
			constraints []string
		}{
			{"frontend", 3, nil},
			{"signaling", 3, nil},
			{"api", 3, nil},
			{"stt", 3, nil},
			{"translation", 3, nil},
			{"tts", 4, nil},
			{"traefik", 1, []string{"node.labels.instance == " + cl.EdgeNode}},
			{"sfu", 1, []string{"node.labels.instance == " + cl.MediaNode}},
			{"agent", 1, []string{"node.labels.instance != " + cl.MediaNode}},
			{"coturn", 1, []string{"node.labels.instance == " + cl.MediaNode}},
			{"prometheus", 1, []string{"node.role == manager"}},
			{"grafana", 1, []string{"node.role == manager"}},
			{"redis", 1, []string{"node.role == manager"}},
			{"redis_gateway", 1, []string{"node.role == manager"}},
			{"socket_proxy", 1, []string{"node.role == manager"}},
		}
		if len(cases) != len(st.Services) {
			t.Errorf("%s: %d services in the catalog, %d checked here", stack, len(st.Services), len(cases))
		}
		for _, c := range cases {
			s := svc(t, st, c.service)
			if s.Replicas != c.replicas || strings.Join(s.Constraints, ";") != strings.Join(c.constraints, ";") {
				t.Errorf("%s %s: %d replicas %q, want %d %q", stack, c.service, s.Replicas, s.Constraints, c.replicas, c.constraints)
			}
		}
	}
}

// Only the read-only Docker API proxy mounts the engine's socket, and
// read-only; it is on one internal network, with Traefik alone; Traefik
// reads the swarm through it and GETs nothing but the sections it needs.
func TestDockerSocketOnlyBehindTheProxy(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		_, st := load(t, stack)
		for _, s := range st.Services {
			for _, m := range s.Mounts {
				if m.Source == DockerSocket && (s.Name != "socket_proxy" || !m.ReadOnly) {
					t.Errorf("%s: service %s mounts the Docker socket (read-only %v)", stack, s.Name, m.ReadOnly)
				}
			}
			if s.Name != "traefik" && s.Name != "socket_proxy" && slices.Contains(s.Networks, NetDockerAPI) {
				t.Errorf("%s: service %s is on the Docker API network", stack, s.Name)
			}
		}
		if n := st.Network(NetDockerAPI); n == nil || !n.Internal || n.Attachable {
			t.Errorf("%s: the Docker API network %+v is not internal and unattachable", stack, n)
		}
		if !slices.Contains(svc(t, st, "traefik").Args, "--providers.swarm.endpoint=tcp://socket_proxy:2375") {
			t.Errorf("%s: Traefik does not read the swarm through the proxy: %q", stack, svc(t, st, "traefik").Args)
		}
		env := svc(t, st, "socket_proxy").Env
		for k, want := range map[string]string{"POST": "0", "CONTAINERS": "0", "EXEC": "0", "SECRETS": "0", "SERVICES": "1", "TASKS": "1"} {
			if env[k] != want {
				t.Errorf("%s: socket proxy %s=%q, want %q", stack, k, env[k], want)
			}
		}
	}
}
