package swarmtest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/smoke"
)

// TestCrossNodeOverlay reproduces the seeds' failure 2 on a three-node swarm
// built on this machine (one engine per network namespace): with 4789/udp
// (VXLAN) cut between nodes, Traefik on the edge node answers 504 after its
// 30 s dial timeout for frontend replicas on other nodes; with the port open,
// as the declared firewall opens it between cluster nodes, every replica
// answers. Traefik and the frontend run from the program's own specs.
func TestCrossNodeOverlay(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the multi-node swarm proof (several minutes)")
	}
	ls := loadStackFile(t, "multinode")
	if !firewallAdmitsVXLAN(ls) {
		t.Fatal("the declared firewall does not admit 4789/udp between cluster nodes")
	}
	c := Open(t) // the main engine builds the images
	im := buildImages(t, c)
	mn := StartMultiNode(t, len(ls.Cluster.Nodes), "platform-swarmtest/backend:test", "platform-swarmtest/traefik:"+TraefikVersion)
	mc := mn.Cluster()
	for i, n := range ls.Cluster.Nodes {
		nd := mn.Nodes[i]
		if err := mc.E.SetNodeLabels(context.Background(), nd.ID, ls.Cluster.SwarmLabels(n)); err != nil {
			t.Fatalf("labelling %s as %s: %v", nd.Name, n.Name, err)
		}
	}

	ls = standIn(t, ls, im, 64) // each engine sees the host's cores; no CPU scaling needed
	m := recordStack(t, ls, newTestCA(t), im)
	d, err := Declarations(m)
	if err != nil {
		t.Fatal(err)
	}
	traefik, frontend, proxy := ls.Stack.FullName("traefik"), ls.Stack.FullName("frontend"), ls.Stack.FullName("socket_proxy")
	adjust := instrument(t, ls, im)
	edgeSock := mn.Nodes[0].Socket
	dep := mc.Deploy(t, d, func(s *ServiceSpec) bool {
		if s.Name != traefik && s.Name != frontend && s.Name != proxy {
			return false // only what the 504 needs: the edge proxy (and its Docker API) and a spread service
		}
		for i, mt := range s.TaskTemplate.ContainerSpec.Mounts {
			// Every engine here shares the host's filesystem: the edge
			// node's engine socket is not /var/run/docker.sock.
			if mt.Type == "bind" && mt.Source == "/var/run/docker.sock" {
				s.TaskTemplate.ContainerSpec.Mounts[i].Source = edgeSock
			}
		}
		return adjust(s)
	})
	mc.WaitAll(t, dep, 5*time.Minute)

	ts, err := mc.E.Tasks(context.Background(), dep.Services[frontend])
	if err != nil {
		t.Fatal(err)
	}
	var remote []*MNode // nodes other than the edge node running a frontend task
	for _, tk := range ts {
		if tk.Status.State != "running" {
			continue
		}
		for _, nd := range mn.Nodes[1:] {
			if tk.NodeID == nd.ID && !slices.Contains(remote, nd) {
				remote = append(remote, nd)
			}
		}
	}
	if len(remote) == 0 {
		t.Fatalf("no frontend task landed off the edge node: %s", DescribeTasks(ts))
	}

	edge := clientTo(mn.Nodes[0].Addr, nil)
	url := "https://" + ls.Cluster.Hostname("") + "/"
	replicas := ls.Stack.Service("frontend").Replicas

	t.Run("4789/udp cut: 504 after the dial timeout", func(t *testing.T) {
		// Wait until Traefik has the route (its provider polls the engine).
		if status, _, _ := get(t, edge, url, http.StatusOK); status != http.StatusOK {
			t.Fatalf("GET %s via the edge node: status %d before cutting anything", url, status)
		}
		for _, nd := range remote {
			if err := nd.InNode("iptables", "-I", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = nd.InNode("iptables", "-D", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP") })
		}
		// Round robin reaches every replica; a cross-node one answers 504
		// once Traefik dials it (a connection pooled before the cut hangs
		// instead, until this client gives up and Traefik drops it).
		hc := smoke.HTTPChecker{Client: edge, Timeout: 40 * time.Second}
		var got error
		for i := 0; i < 3*replicas; i++ {
			_, err := hc.GetOK(context.Background(), url)
			if err != nil && strings.Contains(err.Error(), "504 Gateway Timeout") {
				got = err
				break
			}
			t.Logf("request %d with 4789/udp cut: %v", i+1, err)
		}
		if got == nil {
			t.Fatal("with 4789/udp cut, Traefik never answered 504 for a cross-node replica")
		}
		t.Logf("as in the seeds: %v", got)
		for _, nd := range remote {
			if err := nd.InNode("iptables", "-D", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP"); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("4789/udp open: every replica answers", func(t *testing.T) {
		hc := smoke.HTTPChecker{Client: edge}
		var got smoke.Replicas
		var err error
		// Traefik's failed backend connections may take a moment to retry.
		for deadline := time.Now().Add(90 * time.Second); ; {
			got, err = hc.GetEveryReplica(context.Background(), url, replicas, "X-Swarmtest-Replica")
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Second)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d requests reached replicas %v", got.Requests, got.Seen)
	})
}

// firewallAdmitsVXLAN reports whether a declared rule between cluster nodes
// (by source tag) admits 4789/udp.
func firewallAdmitsVXLAN(ls localStack) bool {
	for _, r := range ls.Topology.Firewall {
		if len(r.SourceTags) == 0 {
			continue
		}
		for _, a := range r.Allows {
			if a.Protocol == "udp" && (len(a.Ports) == 0 || slices.Contains(a.Ports, "4789")) {
				return true
			}
		}
	}
	return false
}
