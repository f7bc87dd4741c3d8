package stacks

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestSFUEnvMatchesItsFlags keeps the stack's SFU_* variables in step with
// the flags sfu/cmd/sfu actually defines (each flag reads SFU_<FLAG>): a
// renamed flag would otherwise be silently ignored in production.
func TestSFUEnvMatchesItsFlags(t *testing.T) {
	src, err := os.ReadFile("../sfu/cmd/sfu/main.go")
	if err != nil {
		t.Skipf("sfu/cmd/sfu not present: %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`fs\.\w*Var\(&[\w.]+, "([a-z0-9-]+)"`).FindAllStringSubmatch(string(src), -1) {
		flags["SFU_"+strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))] = true
	}
	if len(flags) < 5 {
		t.Fatalf("found only %d flags in sfu/cmd/sfu/main.go; the pattern no longer matches", len(flags))
	}
	for _, stack := range []string{"prod", "staging"} {
		_, st := load(t, stack)
		s := svc(t, st, "sfu")
		for k := range s.Env {
			if !flags[k] {
				t.Errorf("%s: SFU env %s matches no flag of sfu/cmd/sfu", stack, k)
			}
		}
		for k := range s.ExternalIPEnv {
			if !flags[k] {
				t.Errorf("%s: SFU env %s matches no flag of sfu/cmd/sfu", stack, k)
			}
		}
		if s.Env["SFU_ALLOW_ANONYMOUS"] != "false" {
			t.Errorf("%s: the stack must set SFU_ALLOW_ANONYMOUS=false", stack)
		}
	}
}

// TestSeedIntent: prod and staging reproduce what the seed notes settled
// on: frontend and signaling spread with no constraint (the 504 fix), SFU
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
			{"coturn", 1, []string{"node.labels.instance == " + cl.MediaNode}},
			{"prometheus", 1, []string{"node.role == manager"}},
			{"grafana", 1, []string{"node.role == manager"}},
			{"redis", 1, []string{"node.role == manager"}},
			{"redis_gateway", 1, []string{"node.role == manager"}},
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
