package infra

import (
	"reflect"
	"testing"
)

func TestPlanFirewallProd(t *testing.T) {
	c := mustLoad(t, "prod")
	top := Plan(c)
	type want struct {
		allows  []Allow
		sources []string
		srcTags []string
		targets []string
	}
	any4 := []string{Anywhere}
	cluster := []string{"prod-cluster"}
	wants := map[string]want{
		"allow-web":           {[]Allow{{"tcp", []string{"80", "443"}}}, CloudflareIPv4, nil, []string{"prod-edge"}},
		"allow-signalling":    {[]Allow{{"tcp", []string{"8443"}}}, CloudflareIPv4, nil, []string{"prod-media"}},
		"allow-media":         {[]Allow{{"udp", []string{"40000-40100"}}, {"tcp", []string{"40000-40100"}}}, any4, nil, []string{"prod-media"}},
		"allow-swarm-manager": {[]Allow{{"tcp", []string{"2377"}}}, nil, cluster, []string{"prod-manager"}},
		"allow-swarm-nodes":   {[]Allow{{"tcp", []string{"7946"}}, {"udp", []string{"7946", "4789"}}}, nil, cluster, cluster},
		"allow-admin-ssh":     {[]Allow{{"tcp", []string{"22"}}}, []string{"192.0.2.0/24"}, nil, cluster},
		"allow-admin-docker":  {[]Allow{{"tcp", []string{"2376"}}}, []string{"192.0.2.0/24"}, nil, []string{"prod-manager"}},
	}
	if len(top.Firewall) != len(wants) {
		t.Errorf("%d rules, want %d", len(top.Firewall), len(wants))
	}
	for _, r := range top.Firewall {
		w, ok := wants[r.Name]
		if !ok {
			t.Errorf("unexpected rule %s", r.Name)
			continue
		}
		if !reflect.DeepEqual(r.Allows, w.allows) || !reflect.DeepEqual(r.SourceRanges, w.sources) ||
			!reflect.DeepEqual(r.SourceTags, w.srcTags) || !reflect.DeepEqual(r.TargetTags, w.targets) {
			t.Errorf("%s = %+v\nwant %+v", r.Name, r, w)
		}
		if (len(r.SourceRanges) == 0) == (len(r.SourceTags) == 0) {
			t.Errorf("%s: exactly one of source ranges / source tags must be set", r.Name)
		}
	}
	for _, p := range []struct {
		proto string
		port  int
	}{{"tcp", 22}, {"tcp", 2375}, {"tcp", 2376}, {"tcp", 2377}, {"tcp", 7946}, {"udp", 7946}, {"udp", 4789}, {"tcp", 80}, {"tcp", 443}, {"tcp", 8443}} {
		if top.Opens(Anywhere, p.proto, p.port) {
			t.Errorf("%d/%s open to the whole internet", p.port, p.proto)
		}
	}
	for _, p := range []struct {
		proto string
		port  int
	}{{"udp", 40000}, {"tcp", 40100}} {
		if !top.Opens(Anywhere, p.proto, p.port) {
			t.Errorf("%d/%s not open to the internet", p.port, p.proto)
		}
	}
	// The proxied hostnames' ports are open to Cloudflare, range by range,
	// and to nothing else: not a neighbour of a range, not a range around one.
	for _, cidr := range CloudflareIPv4 {
		for _, port := range []int{80, 443, 8443} {
			if !top.Opens(cidr, "tcp", port) {
				t.Errorf("%d/tcp not open to Cloudflare's %s", port, cidr)
			}
		}
	}
	for _, cidr := range []string{"198.51.100.0/24", "173.245.0.0/16", "104.0.0.0/8"} {
		if top.Opens(cidr, "tcp", 443) {
			t.Errorf("443/tcp open to %s", cidr)
		}
	}
}

func TestPlanDNS(t *testing.T) {
	for stack, names := range map[string][]string{
		"prod":    {"jbcalling.site", "www.jbcalling.site", "api.jbcalling.site", "grafana.jbcalling.site", "webrtc.jbcalling.site", "media.jbcalling.site"},
		"staging": {"staging.jbcalling.site", "staging-www.jbcalling.site", "staging-api.jbcalling.site", "staging-grafana.jbcalling.site", "staging-webrtc.jbcalling.site", "staging-media.jbcalling.site"},
	} {
		top := Plan(mustLoad(t, stack))
		want := []DNSRecord{
			{Name: names[0], Sub: "", Type: "A", Node: "translation01", Proxied: true},
			{Name: names[1], Sub: "www", Type: "A", Node: "translation01", Proxied: true},
			{Name: names[2], Sub: "api", Type: "A", Node: "translation01", Proxied: true},
			{Name: names[3], Sub: "grafana", Type: "A", Node: "translation01", Proxied: true},
			{Name: names[4], Sub: "webrtc", Type: "A", Node: "translation02", Proxied: true},
			{Name: names[5], Sub: "media", Type: "A", Node: "translation02", Proxied: false},
		}
		if !reflect.DeepEqual(top.DNS, want) {
			t.Errorf("%s DNS:\n got %+v\nwant %+v", stack, top.DNS, want)
		}
	}
}

func TestPlanNodes(t *testing.T) {
	top := Plan(mustLoad(t, "staging"))
	if len(top.Nodes) != 3 {
		t.Fatalf("nodes %v", top.Nodes)
	}
	n, ok := top.Node("translation01")
	if !ok || n.ResourceName != "staging-translation01" || n.InternalIP != "10.150.0.2" || n.MemoryMB != 16384 ||
		!reflect.DeepEqual(n.Tags, []string{"staging-cluster", "staging-manager", "staging-edge"}) ||
		n.SwarmLabels["edge"] != "true" || n.SwarmLabels["instance"] != "translation01" {
		t.Errorf("planned manager %+v", n)
	}
	urls := top.PublicURLs()
	if urls["api"] != "https://staging-api.jbcalling.site" || urls["webrtc"] != "wss://staging-webrtc.jbcalling.site:8443" {
		t.Errorf("urls %v", urls)
	}
}
