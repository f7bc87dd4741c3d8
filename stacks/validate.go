package stacks

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/swarmkit/v2/api"
	"github.com/moby/swarmkit/v2/manager/constraint"

	"github.com/jbcalling/platform/infra"
)

// Rule numbers of the checks (stacks/README.md, "What the validator rejects").
const (
	RuleModel     = 0 // references, duplicates, counts
	RuleRouting   = 1 // a routed service Traefik would skip
	RuleCrossNode = 2 // swarm ports between nodes, overlay MTU
	RulePlacement = 3 // constraints, host-port capacity and clashes
	RuleExposure  = 4 // media ports, DNS names, firewall admission
	RuleMemory    = 5 // pinned reservations vs machine memory
)

// Problem is one validation failure; Subject names the service, node, port,
// network or label at fault.
type Problem struct {
	Rule    int
	Subject string
	Message string
}

func (p Problem) String() string { return fmt.Sprintf("rule %d: %s: %s", p.Rule, p.Subject, p.Message) }

// ValidationError lists every problem Validate found.
type ValidationError struct{ Problems []Problem }

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "service stack: %d problem(s):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - " + p.String())
	}
	return b.String()
}

// Validate checks the stack against the declared cluster and returns a
// *ValidationError listing every problem, or nil.
func Validate(top infra.Topology, st *Stack) error {
	v := &validator{top: top, cl: top.Config, st: st}
	if v.cl == nil || st == nil {
		return &ValidationError{[]Problem{{RuleModel, "stack", "no cluster config or no stack"}}}
	}
	v.model()
	v.crossNode()
	v.placement()
	v.routing()
	v.exposure()
	v.memory()
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{v.problems}
}

type validator struct {
	top      infra.Topology
	cl       *infra.Config
	st       *Stack
	problems []Problem
	eligible map[string][]string // service → nodes its constraints admit
}

func (v *validator) add(rule int, subject, format string, a ...any) {
	v.problems = append(v.problems, Problem{rule, subject, fmt.Sprintf(format, a...)})
}

// model checks references inside the stack itself.
func (v *validator) model() {
	v.traefikNames()
	seen := map[string]bool{}
	for _, s := range v.st.Services {
		subj := "service " + s.Name
		if s.Name == "" || seen[s.Name] {
			v.add(RuleModel, subj, "empty or duplicate service name")
		}
		seen[s.Name] = true
		if s.Image == "" {
			v.add(RuleModel, subj, "no image")
		}
		if !s.Global && s.Replicas < 0 {
			v.add(RuleModel, subj, "negative replica count %d", s.Replicas)
		}
		v.references(&s)
		v.ports(&s)
		v.updatePolicies(&s)
		v.mounts(&s)
		for field, d := range s.durations() {
			if _, err := providerDuration(d); d != "" && err != nil {
				v.add(RuleModel, subj, "%s: %v", field, err)
			}
		}
		if _, err := strconv.ParseUint(s.UID, 10, 32); s.UID != "" && err != nil {
			v.add(RuleModel, subj, "uid %q is not a number", s.UID)
		}
	}
}

// traefikNames: Traefik merges every service's labels into one namespace,
// so a router or middleware name used twice is a conflict it drops, and a
// router may use only middlewares some service defines.
func (v *validator) traefikNames() {
	routers, middlewares := map[string]string{}, map[string]string{}
	for _, s := range v.st.Services {
		for _, r := range s.Routes {
			if other, dup := routers[r.Name]; dup {
				v.add(RuleRouting, "router "+r.Name, "declared by both %s and %s", other, s.Name)
			}
			routers[r.Name] = s.Name
		}
		for _, m := range s.Middlewares {
			if other, dup := middlewares[m.Name]; dup {
				v.add(RuleRouting, "middleware "+m.Name, "declared by both %s and %s", other, s.Name)
			}
			middlewares[m.Name] = s.Name
		}
	}
	for _, s := range v.st.Services {
		for _, r := range s.Routes {
			for _, m := range r.Middlewares {
				if _, ok := middlewares[m]; !ok {
					v.add(RuleRouting, "service "+s.Name, "router %s uses middleware %q that no service defines", r.Name, m)
				}
			}
		}
	}
}

// references: the networks and secrets s uses are declared.
func (v *validator) references(s *Service) {
	for _, n := range s.Networks {
		if v.st.Network(n) == nil {
			v.add(RuleModel, "service "+s.Name, "network %q is not declared in the stack", n)
		}
	}
	for _, r := range s.Secrets {
		if v.st.Secret(r.Secret) == nil {
			v.add(RuleModel, "service "+s.Name, "secret %q is not declared in the stack", r.Secret)
		}
	}
}

func (v *validator) ports(s *Service) {
	for _, p := range s.Ports {
		subj := fmt.Sprintf("service %s port %d", s.Name, p.Published)
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			v.add(RuleModel, subj, "protocol %q is not tcp or udp", p.Protocol)
		}
		if p.Mode != ModeHost && p.Mode != ModeIngress {
			v.add(RuleModel, subj, "publish mode %q is not host or ingress", p.Mode)
		}
		if s.DNSRR && p.Mode == ModeIngress {
			v.add(RuleModel, "service "+s.Name, "port %d is published through the ingress mesh, which a DNS round-robin service cannot use", p.Published)
		}
	}
}

func (v *validator) updatePolicies(s *Service) {
	for _, u := range []struct {
		what string
		p    UpdatePolicy
		ok   []string
	}{{"update", s.Update, []string{"rollback", "pause", "continue"}}, {"rollback", s.Rollback, []string{"pause", "continue"}}} {
		if u.p.Order != StartFirst && u.p.Order != StopFirst {
			v.add(RuleModel, "service "+s.Name, "%s order %q is not start-first or stop-first", u.what, u.p.Order)
		}
		if !slices.Contains(u.ok, u.p.FailureAction) {
			v.add(RuleModel, "service "+s.Name, "%s failure action %q is not one of %s", u.what, u.p.FailureAction, strings.Join(u.ok, ", "))
		}
	}
}

func (v *validator) mounts(s *Service) {
	for _, m := range s.Mounts {
		switch {
		case m.Type != "volume" && m.Type != "bind" && m.Type != "tmpfs":
			v.add(RuleModel, "service "+s.Name, "mount %s: type %q is not volume, bind or tmpfs", m.Target, m.Type)
		case m.Type == "tmpfs" && m.Source != "":
			v.add(RuleModel, "service "+s.Name, "tmpfs mount %s: a tmpfs has no source", m.Target)
		}
	}
}

// crossNode (rule 2): every pair of nodes must reach each other on the swarm
// ports, and no overlay may be larger than the VPC MTU.
func (v *validator) crossNode() {
	for _, src := range v.cl.Nodes {
		for _, dst := range v.cl.Nodes {
			if src.Name == dst.Name {
				continue
			}
			need := []struct {
				proto string
				port  int
				why   string
			}{
				{"tcp", 7946, "gossip"},
				{"udp", 7946, "gossip"},
				{"udp", 4789, "VXLAN data plane: cross-node container traffic would time out (504 after 30 s)"},
			}
			if dst.Role == infra.RoleManager {
				need = append(need, struct {
					proto string
					port  int
					why   string
				}{"tcp", 2377, "cluster management"})
			}
			for _, n := range need {
				if v.firewallRule(v.fromNode(src), dst, n.proto, n.port) == "" {
					v.add(RuleCrossNode, fmt.Sprintf("port %d/%s", n.port, n.proto),
						"not allowed from node %s to node %s by the declared firewall (%s)", src.Name, dst.Name, n.why)
				}
			}
		}
	}
	for _, n := range v.st.Networks {
		subj := "network " + v.st.FullName(n.Name)
		switch {
		case n.MTU == 0:
			v.add(RuleCrossNode, subj, "no com.docker.network.driver.mtu option: docker's base of 1500 exceeds the VPC MTU %d", v.cl.MTU)
		case n.MTU > v.cl.MTU:
			v.add(RuleCrossNode, subj, "MTU %d is larger than the VPC MTU %d: large packets vanish", n.MTU, v.cl.MTU)
		}
	}
}

// swarmNode is the scheduler's view of a declared node.
func (v *validator) swarmNode(n infra.Node) *api.Node {
	role := api.NodeRoleWorker
	if n.Role == infra.RoleManager {
		role = api.NodeRoleManager
	}
	return &api.Node{
		ID:   n.Name,
		Spec: api.NodeSpec{Annotations: api.Annotations{Name: n.Name, Labels: v.cl.SwarmLabels(n)}},
		Role: role,
		Description: &api.NodeDescription{
			Hostname: v.cl.ResourceName(n.Name),
			Platform: &api.Platform{OS: "linux", Architecture: "x86_64"},
		},
		Status: api.NodeStatus{Addr: v.cl.NodeInternalIP(n.Name)},
	}
}

// placement (rule 3).
func (v *validator) placement() {
	v.eligible = map[string][]string{}
	allLabels := map[string]bool{}
	for _, n := range v.cl.Nodes {
		for k := range v.cl.SwarmLabels(n) {
			allLabels[k] = true
		}
	}
	for _, s := range v.st.Services {
		v.eligible[s.Name] = v.eligibleNodes(s, allLabels)
		if v.eligible[s.Name] != nil {
			v.hostPorts(s)
		}
	}
	for _, n := range v.cl.Nodes {
		v.portClaims(n)
	}
}

// eligibleNodes are the nodes s's constraints admit; nil, with the
// problem added, when there is none or they do not parse.
func (v *validator) eligibleNodes(s Service, allLabels map[string]bool) []string {
	subj := "service " + s.Name
	cons, err := constraint.Parse(s.Constraints)
	if err != nil {
		v.add(RulePlacement, subj, "placement constraint %q: %v", strings.Join(s.Constraints, ", "), err)
		return nil
	}
	for _, c := range s.Constraints {
		key := constraintKey(c)
		if lk, ok := strings.CutPrefix(strings.ToLower(key), constraint.NodeLabelPrefix); ok {
			label := key[len(key)-len(lk):]
			if !allLabels[label] {
				v.add(RulePlacement, subj, "constraint %q names label %q that no declared node has", c, label)
			}
		}
	}
	var nodes []string
	for _, n := range v.cl.Nodes {
		if constraint.NodeMatches(cons, v.swarmNode(n)) {
			nodes = append(nodes, n.Name)
		}
	}
	if len(nodes) == 0 {
		v.add(RulePlacement, subj, "no declared node satisfies constraints [%s]", strings.Join(s.Constraints, ", "))
	}
	return nodes
}

// hostPorts: a host port binds once per node, so replicas need as many
// nodes, and an update must stop the old task first.
func (v *validator) hostPorts(s Service) {
	host, nodes := s.HostPorts(), v.eligible[s.Name]
	if len(host) == 0 {
		return
	}
	if !s.Global && s.Replicas > len(nodes) {
		v.add(RulePlacement, "service "+s.Name, "%d replicas publish host port %d/%s but only %d node(s) are eligible (%s)",
			s.Replicas, host[0].Published, host[0].Protocol, len(nodes), strings.Join(nodes, ", "))
	}
	if s.Update.Order == StartFirst {
		v.add(RulePlacement, "service "+s.Name, "update order start-first cannot bind host port %d/%s while the old task still holds it; use stop-first",
			host[0].Published, host[0].Protocol)
	}
}

// portClaims: the same host port twice on node n; ingress ports bind on
// every node.
func (v *validator) portClaims(n infra.Node) {
	type key struct {
		proto string
		port  int
	}
	claims := map[key][]string{}
	for _, s := range v.st.Services {
		for _, p := range s.Ports {
			if p.Mode == ModeIngress || slices.Contains(v.eligible[s.Name], n.Name) {
				claims[key{p.Protocol, p.Published}] = append(claims[key{p.Protocol, p.Published}], s.Name)
			}
		}
	}
	keys := slices.Collect(maps.Keys(claims))
	slices.SortFunc(keys, func(a, b key) int {
		if a.port != b.port {
			return a.port - b.port
		}
		return strings.Compare(a.proto, b.proto)
	})
	for _, k := range keys {
		if who := claims[k]; len(who) > 1 {
			v.add(RulePlacement, fmt.Sprintf("node %s port %d/%s", n.Name, k.port, k.proto),
				"claimed more than once (by %s)", strings.Join(who, ", "))
		}
	}
}

// routing (rule 1): every routed service must be one Traefik's Swarm
// provider actually discovers.
func (v *validator) routing() {
	proxy := v.st.Service(ProxyService)
	if proxy != nil {
		v.proxy(proxy)
	}
	for _, s := range v.st.Services {
		subj := "service " + s.Name
		for _, k := range slices.Sorted(maps.Keys(s.ContainerLabels)) {
			if strings.HasPrefix(k, "traefik.") {
				v.add(RuleRouting, subj, "label %q is a container label; Traefik's Swarm provider reads service labels only", k)
			}
		}
		if !routed(s) {
			continue
		}
		if proxy == nil {
			v.add(RuleRouting, subj, "is routed but the stack has no %q service", ProxyService)
			continue
		}
		if s.ServiceLabels["traefik.enable"] != "true" {
			v.add(RuleRouting, subj, "label traefik.enable=true is missing and Traefik runs with exposedByDefault=false")
		}
		if v.reachable(s, proxy) {
			v.routerLabels(s)
		}
	}
}

// proxy: Traefik's provider network is one it is on, and it runs where
// the Swarm API answers.
func (v *validator) proxy(proxy *Service) {
	// The provider's default network must be one Traefik is on, or
	// every single-network service behind it is unreachable.
	for _, a := range proxy.Args {
		if n, ok := strings.CutPrefix(a, "--providers.swarm.network="); ok &&
			!slices.ContainsFunc(proxy.Networks, func(pn string) bool { return v.st.FullName(pn) == n }) {
			v.add(RuleRouting, "service "+ProxyService, "--providers.swarm.network=%s is not a network it is attached to", n)
		}
	}
	// The Swarm provider lists services through the local socket; only
	// managers answer the Swarm API.
	for _, nn := range v.eligible[ProxyService] {
		if n, ok := v.cl.Node(nn); ok && n.Role != infra.RoleManager {
			v.add(RuleRouting, "service "+ProxyService, "may run on worker node %s, where the Swarm API (read through the docker socket) is unavailable; pin it to a manager", nn)
		}
	}
}

// routed: s has routes, or router labels of its own.
func routed(s Service) bool {
	for k := range s.ServiceLabels {
		if strings.HasPrefix(k, "traefik.http.routers.") {
			return true
		}
	}
	return len(s.Routes) > 0
}

// reachable: Traefik can reach s over a network they share, and knows
// which one when s is on several. It reports whether s is on a swarm
// network at all (the label checks mean nothing otherwise).
func (v *validator) reachable(s Service, proxy *Service) bool {
	subj := "service " + s.Name
	if len(s.Networks) == 0 {
		if s.HostNetwork {
			v.add(RuleRouting, subj, "is on the host network only; Traefik skips tasks without a swarm network")
		} else {
			v.add(RuleRouting, subj, "is on no swarm network; Traefik cannot reach it")
		}
		return false
	}
	var shared []string
	for _, n := range s.Networks {
		if slices.Contains(proxy.Networks, n) {
			shared = append(shared, v.st.FullName(n))
		}
	}
	if len(shared) == 0 {
		v.add(RuleRouting, subj, "shares no network with %s (service on %s, %s on %s)",
			ProxyService, strings.Join(s.Networks, ", "), ProxyService, strings.Join(proxy.Networks, ", "))
	}
	if len(s.Networks) > 1 {
		nl, ok := s.ServiceLabels["traefik.docker.network"]
		switch {
		case !ok:
			v.add(RuleRouting, subj, "is on %d networks (%s) without label traefik.docker.network: Traefik may pick one it is not on",
				len(s.Networks), strings.Join(s.Networks, ", "))
		case !slices.Contains(shared, nl):
			v.add(RuleRouting, subj, "label traefik.docker.network=%s is not a network it shares with %s (%s)",
				nl, ProxyService, strings.Join(shared, ", "))
		}
	}
	return true
}

// routerLabels: every router reaches a load-balancer service with a port
// label, and the route labels are the ones the routes generate.
func (v *validator) routerLabels(s Service) {
	l := s.ServiceLabels
	portLabels := map[string]bool{}
	for k := range l {
		if rest, ok := strings.CutPrefix(k, "traefik.http.services."); ok {
			if name, ok := strings.CutSuffix(rest, ".loadbalancer.server.port"); ok {
				portLabels[name] = true
			}
		}
	}
	if len(portLabels) == 0 {
		v.add(RuleRouting, "service "+s.Name, "no traefik.http.services.<name>.loadbalancer.server.port label; in Swarm Traefik skips the service")
	}
	for _, k := range slices.Sorted(maps.Keys(l)) {
		rest, ok := strings.CutPrefix(k, "traefik.http.routers.")
		if !ok || !strings.HasSuffix(rest, ".rule") {
			continue
		}
		router := strings.TrimSuffix(rest, ".rule")
		target := l["traefik.http.routers."+router+".service"]
		if target != "" && !strings.Contains(target, "@") && !portLabels[target] {
			v.add(RuleRouting, "label traefik.http.routers."+router+".service",
				"service %s: router %s targets %q which has no loadbalancer.server.port label", s.Name, router, target)
		}
	}
	for _, r := range s.Routes {
		if got := l["traefik.http.routers."+r.Name+".rule"]; got != RouteRule(r) {
			v.add(RuleRouting, "label traefik.http.routers."+r.Name+".rule",
				"service %s: label is %q but route %s says %q (labels must be generated from routes)", s.Name, got, r.Name, RouteRule(r))
		}
	}
}

// exposure (rule 4): media ports inside the media range and admitted, the
// SFU's names pointing at its node, routed hosts with DNS records, published
// ports admitted by the firewall.
func (v *validator) exposure() {
	records := map[string]infra.DNSRecord{}
	for _, r := range v.top.DNS {
		records[r.Name] = r
	}
	proxyNodes := v.eligible[ProxyService]
	for _, s := range v.st.Services {
		for _, p := range s.Ports {
			v.published(s, p)
		}
		if len(s.DNSNames) > 0 {
			v.dnsNames(s, records)
		}
		for _, rt := range s.Routes {
			for _, h := range rt.Hosts {
				r, ok := records[h]
				switch {
				case !ok:
					v.add(RuleExposure, "host "+h, "routed by %s (router %s) but no DNS record is declared", s.Name, rt.Name)
				case len(proxyNodes) > 0 && !slices.Contains(proxyNodes, r.Node):
					v.add(RuleExposure, "host "+h, "DNS points at node %s but %s runs on %s", r.Node, ProxyService, strings.Join(proxyNodes, ", "))
				}
			}
		}
	}
}

// published: a media port is in the media range and host-published, and
// the firewall admits each port where it is published.
func (v *validator) published(s Service, p Port) {
	mr := v.cl.MediaPorts
	psubj := fmt.Sprintf("service %s port %d/%s", s.Name, p.Published, p.Protocol)
	if p.Media && (p.Published < mr.From || p.Published > mr.To) {
		v.add(RuleExposure, psubj, "media port outside the firewall's media range %d-%d", mr.From, mr.To)
	}
	if p.Media && p.Mode != ModeHost {
		v.add(RuleExposure, psubj, "media port published through the ingress mesh; use host mode")
	}
	nodes := v.publishedOn(s, p.Mode)
	srcs, from := fromInternet, "the internet"
	if p.Proxied {
		srcs, from = fromCloudflare, "Cloudflare's proxies"
	}
	admitted := 0
	for _, nn := range nodes {
		if n, _ := v.cl.Node(nn); v.firewallRule(srcs, n, p.Protocol, p.Published) != "" {
			admitted++
		} else if p.Mode == ModeHost {
			v.add(RuleExposure, psubj, "no firewall rule admits it from %s on node %s, where the service may run", from, nn)
		}
	}
	if p.Mode == ModeIngress && admitted == 0 {
		v.add(RuleExposure, psubj, "no firewall rule admits it on any node")
	}
}

// publishedOn are the nodes where a port of s published in mode binds:
// an ingress port binds on every node.
func (v *validator) publishedOn(s Service, mode PublishMode) []string {
	if mode != ModeIngress {
		return v.eligible[s.Name]
	}
	nodes := make([]string, 0, len(v.cl.Nodes))
	for _, n := range v.cl.Nodes {
		nodes = append(nodes, n.Name)
	}
	return nodes
}

// dnsNames: a service with DNS names runs on one node, the one its
// records point at.
func (v *validator) dnsNames(s Service, records map[string]infra.DNSRecord) {
	nodes := v.eligible[s.Name]
	if len(nodes) != 1 {
		v.add(RuleExposure, "service "+s.Name, "has DNS names %s but is not pinned to exactly one node (eligible: %s)",
			strings.Join(s.DNSNames, ", "), strings.Join(nodes, ", "))
	}
	for _, name := range s.DNSNames {
		r, ok := records[name]
		switch {
		case !ok:
			v.add(RuleExposure, "DNS name "+name, "service %s needs it but no DNS record is declared", s.Name)
		case len(nodes) == 1 && r.Node != nodes[0]:
			v.add(RuleExposure, "DNS name "+name, "points at node %s but service %s is pinned to node %s", r.Node, s.Name, nodes[0])
		}
	}
}

// memory (rule 5): reservations of services pinned to one node must fit
// that node's machine type; no task may reserve more than a node has.
func (v *validator) memory() {
	pinned := map[string]int{}
	var who = map[string][]string{}
	for _, s := range v.st.Services {
		nodes := v.eligible[s.Name]
		if len(nodes) == 0 || s.Resources.ReserveMemoryMB == 0 {
			continue
		}
		tasks := s.Replicas
		if s.Global {
			tasks = 1
		}
		if !slices.ContainsFunc(nodes, func(nn string) bool {
			mb, err := v.memoryMB(nn)
			return err == nil && s.Resources.ReserveMemoryMB <= mb
		}) {
			v.add(RuleMemory, "service "+s.Name, "reserves %d MB per task, more than any eligible node (%s) has",
				s.Resources.ReserveMemoryMB, strings.Join(nodes, ", "))
		}
		if len(nodes) == 1 || s.Global {
			for _, nn := range nodes {
				pinned[nn] += tasks * s.Resources.ReserveMemoryMB
				who[nn] = append(who[nn], fmt.Sprintf("%s %d×%d MB", s.Name, tasks, s.Resources.ReserveMemoryMB))
			}
		}
	}
	v.clusterReservations()
	for _, n := range v.cl.Nodes {
		mb, err := v.memoryMB(n.Name)
		if err != nil {
			v.add(RuleMemory, "node "+n.Name, "%v", err)
			continue
		}
		if pinned[n.Name] > mb {
			v.add(RuleMemory, "node "+n.Name, "pinned memory reservations %d MB exceed machine type %s (%d MB): %s",
				pinned[n.Name], n.MachineType, mb, strings.Join(who[n.Name], ", "))
		}
	}
}

// clusterReservations: the scheduler refuses tasks whose reservations no
// longer fit, so the whole stack's reservations must fit the whole
// cluster.
func (v *validator) clusterReservations() {
	var wantMB, haveMB int
	var wantCPU, haveCPU float64
	for _, s := range v.st.Services {
		tasks := s.Replicas
		if s.Global {
			tasks = len(v.eligible[s.Name])
		}
		wantMB += tasks * s.Resources.ReserveMemoryMB
		wantCPU += float64(tasks) * s.Resources.ReserveCPUs
	}
	for _, n := range v.cl.Nodes {
		if mb, ok := infra.MachineMemoryMB(n.MachineType); ok {
			haveMB += mb
		}
		if c, ok := infra.MachineVCPUs(n.MachineType); ok {
			haveCPU += float64(c)
		}
	}
	if wantMB > haveMB {
		v.add(RuleMemory, "stack", "memory reservations of all tasks total %d MB, more than the cluster's %d MB", wantMB, haveMB)
	}
	if wantCPU > haveCPU+1e-9 {
		v.add(RuleMemory, "stack", "CPU reservations of all tasks total %.2f, more than the cluster's %.0f vCPUs", wantCPU, haveCPU)
	}
}

func (v *validator) memoryMB(node string) (int, error) {
	n, ok := v.cl.Node(node)
	if !ok {
		return 0, fmt.Errorf("node %s is not declared", node)
	}
	mb, ok := infra.MachineMemoryMB(n.MachineType)
	if !ok {
		return 0, fmt.Errorf("unknown machine type %q (memory unknown)", n.MachineType)
	}
	return mb, nil
}

// fromInternet is every address; fromCloudflare every one of Cloudflare's
// proxies, which alone reach the proxied hostnames' ports.
var fromInternet = []infra.Source{{CIDR: infra.Anywhere}}

var fromCloudflare = func() []infra.Source {
	var out []infra.Source
	for _, c := range infra.CloudflareIPv4 {
		out = append(out, infra.Source{CIDR: c})
	}
	return out
}()

func (v *validator) fromNode(n infra.Node) []infra.Source {
	return []infra.Source{{Tags: v.cl.NodeTags(n), IP: v.cl.NodeInternalIP(n.Name)}}
}

// firewallRule returns the name of a declared rule admitting proto/port
// to dst from every one of srcs (each by some rule), or "".
func (v *validator) firewallRule(srcs []infra.Source, dst infra.Node, proto string, port int) string {
	dstTags := v.cl.NodeTags(dst)
	name := ""
	for _, src := range srcs {
		found := ""
		for _, r := range v.top.Firewall {
			if r.Admits(src, dstTags, proto, port) {
				found = r.Name
				break
			}
		}
		if found == "" {
			return ""
		}
		name = found
	}
	return name
}

// constraintKey is the left side of a constraint already accepted by
// swarmkit's parser (which keeps its key unexported).
func constraintKey(c string) string {
	for _, op := range []string{"==", "!="} {
		if k, _, ok := strings.Cut(c, op); ok {
			return strings.TrimSpace(k)
		}
	}
	return ""
}
