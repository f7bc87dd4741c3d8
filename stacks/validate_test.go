package stacks

import (
	"errors"
	"strings"
	"testing"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/internal/pulumitest"
)

// load builds the real stack of a committed Pulumi.<stack>.yaml, freshly
// (tests mutate it).
func load(t *testing.T, stack string) (infra.Topology, *Stack) {
	t.Helper()
	cfg := pulumitest.StackConfig(t, stack)
	top, st, err := FromConfig(stack, func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
	if err != nil {
		t.Fatalf("%s: %v", stack, err)
	}
	return top, st
}

func TestRealStacksPass(t *testing.T) {
	for _, stack := range []string{"prod", "staging"} {
		t.Run(stack, func(t *testing.T) {
			top, st := load(t, stack)
			if err := Validate(top, st); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func svc(t *testing.T, st *Stack, name string) *Service {
	t.Helper()
	s := st.Service(name)
	if s == nil {
		t.Fatalf("no service %s", name)
	}
	return s
}

// TestValidateRejects reproduces each mistake the validator exists for
// (those that broke the hand-run cluster) on the real prod stack, one case
// per mistake, and asserts the message names what is at fault.
func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		rule   int
		break_ func(t *testing.T, top *infra.Topology, st *Stack)
		want   []string
	}{
		// Rule 1: a routed service Traefik would skip (the 504s of the hand-run stack).
		{"no shared network with traefik", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "grafana")
			s.Networks = []string{NetMonitoring}
			s.ServiceLabels = TraefikLabels(s, "")
		}, []string{"service grafana", "shares no network with traefik"}},
		{"missing port label", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			delete(svc(t, st, "frontend").ServiceLabels, "traefik.http.services.frontend-80.loadbalancer.server.port")
		}, []string{"service frontend", "loadbalancer.server.port"}},
		{"container labels instead of service labels", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "sfu")
			s.ContainerLabels, s.ServiceLabels = s.ServiceLabels, nil
		}, []string{"service sfu", `label "traefik.enable" is a container label`}},
		{"host network only", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "sfu")
			s.Networks, s.HostNetwork = nil, true
		}, []string{"service sfu", "host network only"}},
		{"ambiguous network", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			delete(svc(t, st, "api").ServiceLabels, "traefik.docker.network")
		}, []string{"service api", "without label traefik.docker.network"}},
		{"network label names a network traefik is not on", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "api").ServiceLabels["traefik.docker.network"] = "translation_backend"
		}, []string{"service api", "traefik.docker.network=translation_backend is not a network it shares"}},
		{"traefik.enable missing", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			delete(svc(t, st, "grafana").ServiceLabels, "traefik.enable")
		}, []string{"service grafana", "traefik.enable=true is missing"}},
		{"hand-edited rule", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "api").ServiceLabels["traefik.http.routers.api.rule"] = "Host(`api.example.com`)"
		}, []string{"label traefik.http.routers.api.rule", "labels must be generated from routes"}},

		{"router name used twice", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "grafana")
			s.Routes[0].Name = "api"
			s.ServiceLabels = TraefikLabels(s, st.FullName(NetEdge))
		}, []string{"router api", "declared by both api and grafana"}},
		{"undefined middleware", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "grafana")
			s.Routes[0].Middlewares = []string{"ratelimit"}
			s.ServiceLabels = TraefikLabels(s, st.FullName(NetEdge))
		}, []string{"service grafana", `router grafana uses middleware "ratelimit" that no service defines`}},

		{"traefik on a worker", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "traefik").Constraints = []string{"node.labels.instance == translation03"}
		}, []string{"service traefik", "may run on worker node translation03"}},

		{"traefik default network it is not on", RuleRouting, func(t *testing.T, _ *infra.Topology, st *Stack) {
			tr := svc(t, st, "traefik")
			for i, a := range tr.Args {
				if strings.HasPrefix(a, "--providers.swarm.network=") {
					tr.Args[i] = "--providers.swarm.network=translation_backend"
				}
			}
		}, []string{"service traefik", "--providers.swarm.network=translation_backend is not a network it is attached to"}},

		// Rule 2: cross-node traffic that cannot flow (its overlay MTU failure).
		{"vxlan port closed", RuleCrossNode, func(t *testing.T, top *infra.Topology, _ *Stack) {
			dropPort(top, "udp", "4789")
		}, []string{"port 4789/udp", "not allowed from node translation01 to node translation02", "VXLAN"}},
		{"manager port closed", RuleCrossNode, func(t *testing.T, top *infra.Topology, _ *Stack) {
			dropPort(top, "tcp", "2377")
		}, []string{"port 2377/tcp", "to node translation01"}},
		{"overlay MTU above VPC MTU", RuleCrossNode, func(t *testing.T, top *infra.Topology, _ *Stack) {
			c := *top.Config
			c.MTU = 1460
			top.Config = &c
		}, []string{"network translation_edge", "MTU 1500 is larger than the VPC MTU 1460"}},
		{"overlay without MTU option", RuleCrossNode, func(t *testing.T, _ *infra.Topology, st *Stack) {
			st.Network(NetBackend).MTU = 0
		}, []string{"network translation_backend", "no com.docker.network.driver.mtu option"}},

		// Rule 3: placement (its services stuck pending).
		{"constraint no node satisfies", RulePlacement, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "frontend").Constraints = []string{"node.labels.instance == translation09"}
		}, []string{"service frontend", "no declared node satisfies constraints [node.labels.instance == translation09]"}},
		{"constraint names unknown label", RulePlacement, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "signaling").Constraints = []string{"node.labels.zone != b"}
		}, []string{"service signaling", `names label "zone" that no declared node has`}},
		{"unparsable constraint", RulePlacement, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "tts").Constraints = []string{"node.labels.instance = translation03"}
		}, []string{"service tts", `placement constraint "node.labels.instance = translation03"`}},
		{"host-port replicas exceed eligible nodes", RulePlacement, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "sfu").Replicas = 2
		}, []string{"service sfu", "2 replicas publish host port 8443/tcp but only 1 node(s) are eligible (translation02)"}},
		{"host port claimed twice on a node", RulePlacement, func(t *testing.T, _ *infra.Topology, st *Stack) {
			c := svc(t, st, "coturn")
			c.Ports[0].Published = 40000 // the SFU's ICE UDP port
		}, []string{"node translation02 port 40000/udp", "claimed more than once (by coturn, sfu)"}},
		{"ingress port clashes with a host port", RulePlacement, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "grafana").Ports = []Port{{Target: 3000, Published: 443, Protocol: "tcp", Mode: ModeIngress}}
		}, []string{"node translation01 port 443/tcp", "claimed more than once (by traefik, grafana)"}},
		{"start-first with host ports", RulePlacement, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "traefik").Update.Order = StartFirst
		}, []string{"service traefik", "start-first cannot bind host port 80/tcp"}},

		// Rule 4: SFU ports and names, routed hosts.
		{"ICE port outside media range", RuleExposure, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "sfu")
			for i := range s.Ports {
				if s.Ports[i].Name == PortSFUICEUDP {
					s.Ports[i].Published, s.Ports[i].Target = 50000, 50000
				}
			}
		}, []string{"service sfu port 50000/udp", "outside the firewall's media range 40000-40100"}},
		{"media through the ingress mesh", RuleExposure, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "sfu")
			for i := range s.Ports {
				if s.Ports[i].Name == PortSFUICETCP {
					s.Ports[i].Mode = ModeIngress
				}
			}
		}, []string{"service sfu port 40000/tcp", "ingress mesh"}},
		{"SFU DNS name on another node", RuleExposure, func(t *testing.T, top *infra.Topology, _ *Stack) {
			for i := range top.DNS {
				if strings.HasPrefix(top.DNS[i].Name, "webrtc.") {
					top.DNS[i].Node = "translation03"
				}
			}
		}, []string{"DNS name webrtc.jbcalling.site", "points at node translation03 but service sfu is pinned to node translation02"}},
		{"SFU not pinned", RuleExposure, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "sfu")
			s.Constraints = []string{"node.role == worker"}
		}, []string{"service sfu", "not pinned to exactly one node (eligible: translation02, translation03)"}},
		{"routed host without DNS record", RuleExposure, func(t *testing.T, _ *infra.Topology, st *Stack) {
			s := svc(t, st, "grafana")
			s.Routes[0].Hosts = []string{"metrics.jbcalling.site"}
			s.ServiceLabels = TraefikLabels(s, st.FullName(NetEdge))
		}, []string{"host metrics.jbcalling.site", "routed by grafana (router grafana) but no DNS record"}},
		{"published port the firewall does not admit", RuleExposure, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "grafana").Ports = []Port{{Target: 3000, Published: 3000, Protocol: "tcp", Mode: ModeHost}}
		}, []string{"service grafana port 3000/tcp", "no firewall rule admits it from the internet on node translation01"}},

		// Rule 5: memory.
		{"task reservation larger than any node", RuleMemory, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "sfu").Resources.ReserveMemoryMB = 20000
		}, []string{"service sfu", "reserves 20000 MB per task, more than any eligible node (translation02)"}},
		{"pinned reservations exceed the machine", RuleMemory, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "redis").Resources.ReserveMemoryMB = 16400
			svc(t, st, "redis_gateway").Resources.ReserveMemoryMB = 16400
		}, []string{"node translation01", "exceed machine type e2-standard-8 (32768 MB)", "redis 1×16400 MB"}},
		{"stack reservations exceed the cluster", RuleMemory, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "stt").Replicas = 70
		}, []string{"stack", "memory reservations of all tasks total", "more than the cluster's 65536 MB"}},
		{"stack CPU reservations exceed the cluster", RuleMemory, func(t *testing.T, _ *infra.Topology, st *Stack) {
			svc(t, st, "tts").Resources.ReserveCPUs = 8
		}, []string{"stack", "CPU reservations of all tasks total", "more than the cluster's 20 vCPUs"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			top, st := load(t, "prod")
			tc.break_(t, &top, st)
			err := Validate(top, st)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			var hit *Problem
			for i, p := range ve.Problems {
				all := true
				for _, w := range tc.want {
					all = all && strings.Contains(p.String(), w)
				}
				if all {
					hit = &ve.Problems[i]
					break
				}
			}
			if hit == nil {
				t.Fatalf("no problem mentions all of %q:\n%v", tc.want, err)
			}
			if hit.Rule != tc.rule {
				t.Errorf("problem %q is rule %d, want %d", hit, hit.Rule, tc.rule)
			}
		})
	}
}

// dropPort removes proto/port from every firewall rule.
func dropPort(top *infra.Topology, proto, port string) {
	fw := make([]infra.FirewallRule, len(top.Firewall))
	for i, r := range top.Firewall {
		r.Allows = append([]infra.Allow(nil), r.Allows...)
		for j, a := range r.Allows {
			if a.Protocol != proto {
				continue
			}
			var keep []string
			for _, p := range a.Ports {
				if p != port {
					keep = append(keep, p)
				}
			}
			if len(keep) == 0 && len(a.Ports) > 0 {
				keep = []string{"1"} // keep the entry but never the dropped port
			}
			r.Allows[j].Ports = keep
		}
		fw[i] = r
	}
	top.Firewall = fw
}

func TestValidateReportsEveryProblem(t *testing.T) {
	top, st := load(t, "prod")
	svc(t, st, "sfu").Replicas = 2
	delete(svc(t, st, "api").ServiceLabels, "traefik.docker.network")
	dropPort(&top, "udp", "4789")
	var ve *ValidationError
	if !errors.As(Validate(top, st), &ve) {
		t.Fatal("want a *ValidationError")
	}
	rules := map[int]bool{}
	for _, p := range ve.Problems {
		rules[p.Rule] = true
	}
	for _, r := range []int{RuleRouting, RuleCrossNode, RulePlacement} {
		if !rules[r] {
			t.Errorf("rule %d problem missing from %v", r, ve)
		}
	}
}
