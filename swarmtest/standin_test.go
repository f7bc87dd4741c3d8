package swarmtest

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jbcalling/platform/stacks"
)

// standIn is the declared stack as this machine runs it, the only
// departures from what the program declares; the translation path (the
// swarm proofs) and the real-engine path (TestRealEngine) both deploy it:
//   - Traefik runs the Traefik release the stack pins (tools/traefik builds
//     the same version from source); the SFU runs this repository's image
//     and the agent run this repository's images (passed to the program as
//     its prebuilt images).
//   - The read-only Docker API proxy runs the stand-in backend in its
//     proxy mode, which opens the API sections the declared environment
//     opens, GET only (the proxy image cannot be pulled here).
//   - Every other service (its image cannot be pulled here) runs the
//     stand-in backend: image, command and arguments are replaced, and its
//     health check becomes the stand-in's own (the declared ones call tools
//     like redis-cli or wget that the stand-in lacks). Name, service labels
//     (Traefik's input), networks, ports, placement, resources, secrets,
//     configs, mounts, update policy and replicas are kept as declared.
//   - CPU reservations are scaled down in proportion when their sum exceeds
//     this machine's cores: the one local node stands for the whole cluster,
//     and the scheduler would otherwise leave tasks pending for lack of CPU.
//     Memory reservations and all limits stay as declared.
func standIn(t testing.TB, ls localStack, im images, cpus int) localStack {
	t.Helper()
	var reserved float64 // CPUs the whole stack reserves
	for _, s := range ls.Stack.Services {
		n := s.Replicas
		if s.Global {
			n = len(ls.Cluster.Nodes)
		}
		reserved += s.Resources.ReserveCPUs * float64(n)
	}
	scale := 1.0
	if avail := 0.8 * float64(cpus); reserved > avail {
		scale = avail / reserved
		t.Logf("the stack reserves %.2f CPUs, this machine has %d: CPU reservations scaled by %.2f", reserved, cpus, scale)
	}
	st := *ls.Stack
	st.Services = slices.Clone(st.Services)
	probe := func(port string) *stacks.Healthcheck {
		return &stacks.Healthcheck{Test: []string{"CMD", "/backend", "-probe=http://127.0.0.1:" + port}, Interval: "2s", Timeout: "2s", Retries: 3}
	}
	for i := range st.Services {
		s := &st.Services[i]
		s.Resources.ReserveCPUs = float64(int(s.Resources.ReserveCPUs*scale*100)) / 100
		s.Env = maps.Clone(s.Env)
		if s.Env == nil {
			s.Env = map[string]string{}
		}
		switch s.Name {
		case "traefik":
			s.Image = im.traefik
		case "sfu", "agent":
		case "socket_proxy":
			s.Image, s.Commands, s.Args = im.backend, nil, nil
			s.Env["SERVICE_NAME"], s.Env["DOCKER_PROXY_SOCKET"] = st.FullName(s.Name), stacks.DockerSocket
			s.Healthcheck = probe("2375/_ping")
		default:
			ports := standInPorts(s)
			s.Image, s.Commands, s.Args = im.backend, nil, nil
			s.Env["SERVICE_NAME"], s.Env["PORTS"] = st.FullName(s.Name), strings.Join(ports, ",")
			s.Healthcheck = probe(ports[0] + "/health")
		}
	}
	if err := stacks.Validate(ls.Topology, &st); err != nil {
		t.Fatalf("the stand-ins made the stack invalid: %v", err)
	}
	ls.Stack = &st
	return ls
}

// standInPorts are the TCP ports a stand-in must listen on: the ports its
// routes send traffic to and its published TCP target ports.
func standInPorts(s *stacks.Service) []string {
	var ports []string
	add := func(p int) {
		if q := strconv.Itoa(p); p > 0 && !slices.Contains(ports, q) {
			ports = append(ports, q)
		}
	}
	for _, r := range s.Routes {
		add(r.Port)
	}
	for _, p := range s.Ports {
		if p.Protocol == "tcp" {
			add(p.Target)
		}
	}
	if len(ports) == 0 {
		add(8080) // a worker nobody calls over HTTP; the health check still needs a port
	}
	return ports
}

// instrument is what the translation path's tests add to the translated
// specs to observe them: the SFU's metrics listener, which only the
// monitoring overlay reaches, is also published on this host
// (sfuMetricsPort), and ingress-mode ports become host-mode when this
// kernel has no IPVS (the routing mesh needs it; on one node both bind
// the same port). It also checks that the SFU and the agent run the
// prebuilt images.
func instrument(t *testing.T, ls localStack, im images) func(*ServiceSpec) bool {
	_, err := os.Stat("/proc/sys/net/ipv4/vs")
	ipvs := err == nil
	return func(s *ServiceSpec) bool {
		if s.Name == ls.Stack.FullName("sfu") {
			if c := s.TaskTemplate.ContainerSpec; c.Image != im.sfu {
				t.Errorf("the program runs SFU image %q, not the prebuilt one it was given (%s)", c.Image, im.sfu)
			}
		}
		if s.Name == ls.Stack.FullName("agent") && s.TaskTemplate.ContainerSpec.Image != im.agent {
			t.Errorf("the program runs agent image %q, not the prebuilt one it was given (%s)", s.TaskTemplate.ContainerSpec.Image, im.agent)
		}
		if s.Name == ls.Stack.FullName("sfu") {
			if s.EndpointSpec != nil {
				s.EndpointSpec.Ports = append(s.EndpointSpec.Ports, PortSpec{Protocol: "tcp", TargetPort: 9090, PublishedPort: sfuMetricsPort, PublishMode: "host"})
			}
		}
		if s.EndpointSpec != nil && !ipvs {
			for i, p := range s.EndpointSpec.Ports {
				if p.PublishMode == "ingress" {
					t.Logf("%s: port %d published in host mode (no IPVS on this kernel for the routing mesh)", s.Name, p.PublishedPort)
					s.EndpointSpec.Ports[i].PublishMode = "host"
				}
			}
		}
		return true
	}
}
