package swarmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/jbcalling/platform/stacks"
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// TestRealEngine runs the service stack (the local Swarm proof's, with
// its stand-ins) through the real engine and providers on this machine's
// swarm: a first preview and up create everything; a second preview
// expects no changes and a second up changes nothing; a changed placement
// is one in-place update; a constraint added by hand (drift) fails
// `preview --refresh --expect-no-changes` naming it, and `up` puts the
// declared one back; the services the provider created match, field by
// field, the specs the swarm proof's translation creates; destroy leaves
// nothing of the stack.
func TestRealEngine(t *testing.T) {
	eng := pulumitest.RealEngine(t, "docker", "random", "tls")
	ls := loadLocalStack(t)
	c := Open(t)
	im := buildImages(t, c)
	info, err := c.E.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ls = standIn(t, ls, im, info.NCPU)
	removeStackObjects(t, c, ls.Stack.Prefix) // an interrupted run's
	labels := map[string]string{}
	for _, n := range ls.Cluster.Nodes {
		for k, v := range ls.Cluster.SwarmLabels(n) {
			labels[k] = v
		}
	}
	c.SetNodeLabels(t, labels)
	ctx := context.Background()

	model := ls.Stack
	program := func(ctx *pulumi.Context) error {
		prov, err := docker.NewProvider(ctx, "local", &docker.ProviderArgs{Host: pulumi.String("unix://" + stacks.DockerSocket)})
		if err != nil {
			return err
		}
		ips := map[string]pulumi.StringInput{}
		for _, n := range ls.Cluster.Nodes {
			ips[n.Name] = pulumi.String("127.0.0.1")
		}
		_, err = stacks.NewStack(ctx, "stack", &stacks.StackArgs{
			Topology: ls.Topology, Config: ls.Config, Stack: model,
			DockerProvider: prov, ExternalIPs: ips,
			ACMEDNSToken:           pulumi.ToSecret(pulumi.String("no-dns-here")).(pulumi.StringOutput),
			Prebuilt:               im.prebuilt(),
			SelfSignedCertificates: true,
		})
		return err
	}
	s := eng.Stack(t, "realengine", program, nil)
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			if _, err := s.Destroy(ctx, optdestroy.ContinueOnError()); err != nil {
				t.Errorf("cleanup destroy: %v", err)
			}
		}
		removeStackObjects(t, c, ls.Stack.Prefix)
	})

	pre, err := s.Preview(ctx)
	if err != nil {
		t.Fatalf("first preview: %v", err)
	}
	t.Logf("first preview: %v", pre.ChangeSummary)
	if got := pulumitest.Changes(pre.ChangeSummary); len(got) != 1 || got[string(apitype.OpCreate)] == 0 {
		t.Fatalf("first preview plans %v, want creates only", pre.ChangeSummary)
	}
	created := pre.ChangeSummary[apitype.OpCreate]

	start := time.Now()
	var out strings.Builder
	up, err := s.Up(ctx, optup.ProgressStreams(&out), optup.ErrorProgressStreams(&out))
	if err != nil {
		t.Fatalf("first up: %v\n%s", err, out.String())
	}
	t.Logf("first up (%s): %v", time.Since(start).Round(time.Second), *up.Summary.ResourceChanges)
	if got := (*up.Summary.ResourceChanges)[string(apitype.OpCreate)]; got != created {
		t.Fatalf("first up created %d, the preview planned %d", got, created)
	}

	t.Run("a second preview expects no changes, a second up changes nothing", func(t *testing.T) {
		var out strings.Builder
		if _, err := s.Preview(ctx, optpreview.ExpectNoChanges(), optpreview.Diff(), optpreview.ProgressStreams(&out)); err != nil {
			t.Fatalf("preview --expect-no-changes: %v\n%s", err, out.String())
		}
		up, err := s.Up(ctx)
		if err != nil {
			t.Fatalf("second up: %v", err)
		}
		if got := pulumitest.Changes(*up.Summary.ResourceChanges); len(got) != 0 {
			t.Fatalf("second up changed %v", got)
		}
	})

	t.Run("the services match the swarm proof's translation", func(t *testing.T) {
		compareWithTranslation(t, c, ls, im)
	})

	t.Run("a changed placement is one in-place update", func(t *testing.T) {
		changed := *model
		changed.Services = slices.Clone(model.Services)
		g := changed.Service("grafana")
		g.Preferences = append(slices.Clone(g.Preferences), "node.labels.zone")
		model = &changed
		var out strings.Builder
		pre, err := s.Preview(ctx, optpreview.Diff(), optpreview.ProgressStreams(&out))
		if err != nil {
			t.Fatal(err)
		}
		if got := pulumitest.Changes(pre.ChangeSummary); !reflect.DeepEqual(got, map[string]int{string(apitype.OpUpdate): 1}) {
			t.Fatalf("preview of a changed placement plans %v, want one update\n%s", pre.ChangeSummary, out.String())
		}
		if _, err := s.Up(ctx); err != nil {
			t.Fatal(err)
		}
		model = ls.Stack
		if _, err := s.Up(ctx); err != nil { // back to the declaration
			t.Fatal(err)
		}
	})

	t.Run("drift is found by preview --refresh and undone by up", func(t *testing.T) {
		name := ls.Stack.FullName("grafana")
		const drift = "node.labels.drifted == yes"
		err := c.E.UpdateService(ctx, name, func(spec map[string]any) {
			ts := spec["TaskTemplate"].(map[string]any)
			pl, _ := ts["Placement"].(map[string]any)
			if pl == nil {
				pl = map[string]any{}
				ts["Placement"] = pl
			}
			cs, _ := pl["Constraints"].([]any)
			pl["Constraints"] = append(cs, drift)
		})
		if err != nil {
			t.Fatalf("changing %s by hand: %v", name, err)
		}
		var out strings.Builder
		_, err = s.Preview(ctx, optpreview.Refresh(), optpreview.ExpectNoChanges(), optpreview.Diff(), optpreview.ProgressStreams(&out))
		if err == nil {
			t.Fatal("preview --refresh --expect-no-changes passed with a constraint changed by hand")
		}
		if !strings.Contains(out.String(), "drifted") {
			t.Fatalf("the failed preview does not name the changed constraint:\n%s", out.String())
		}
		t.Logf("drift preview: %v", err)
		if _, err := s.Up(ctx, optup.Refresh()); err != nil {
			t.Fatalf("up after drift: %v", err)
		}
		svc, err := c.E.Service(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if pl := svc.Spec.TaskTemplate.Placement; pl != nil && slices.Contains(pl.Constraints, drift) {
			t.Fatalf("up left the hand-made constraint: %v", pl.Constraints)
		}
		if _, err := s.Preview(ctx, optpreview.Refresh(), optpreview.ExpectNoChanges()); err != nil {
			t.Fatalf("after up, preview --refresh still finds changes: %v", err)
		}
	})

	t.Run("a changed MTU replaces the networks, through the documented procedure", func(t *testing.T) {
		changed := *model
		changed.Networks = slices.Clone(model.Networks)
		var urns []string
		project := pulumitest.ProjectName(t)
		mtu := model.Networks[0].MTU - 50
		for i := range changed.Networks {
			changed.Networks[i].MTU = mtu
			urns = append(urns, fmt.Sprintf("urn:pulumi:%s::%s::platform:stacks:ServiceStack$docker:index/network:Network::stack-net-%s",
				s.Name(), project, changed.Networks[i].Name))
		}
		model = &changed
		var out strings.Builder
		pre, err := s.Preview(ctx, optpreview.Diff(), optpreview.ProgressStreams(&out))
		if err != nil {
			t.Fatal(err)
		}
		if pre.ChangeSummary[apitype.OpReplace] < len(urns) {
			t.Fatalf("a changed MTU plans %v, want the %d networks replaced\n%s", pre.ChangeSummary, len(urns), out.String())
		}
		// Docker refuses to remove a network a service uses, and a new
		// one cannot take the VXLAN ID while the old one holds it: the
		// networks and the services on them go first, then up makes them
		// anew (docs: changing the overlay MTU).
		if _, err := s.Destroy(ctx, optdestroy.Target(urns), optdestroy.TargetDependents()); err != nil {
			t.Fatalf("destroy --target <networks> --target-dependents: %v", err)
		}
		if _, err := s.Up(ctx); err != nil {
			t.Fatalf("up after removing the networks: %v", err)
		}
		for _, n := range changed.Networks {
			info, err := c.E.Network(ctx, ls.Stack.FullName(n.Name))
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Options["com.docker.network.driver.mtu"]; got != fmt.Sprint(mtu) {
				t.Errorf("network %s has MTU option %q after the change, want %d", n.Name, got, mtu)
			}
		}
		if _, err := s.Preview(ctx, optpreview.ExpectNoChanges()); err != nil {
			t.Fatalf("after the MTU change, preview still finds changes: %v", err)
		}
	})

	start = time.Now()
	res, err := s.Destroy(ctx)
	if err != nil {
		t.Fatalf("destroy: %v", err)
	}
	destroyed = true
	t.Logf("destroy (%s): %v", time.Since(start).Round(time.Second), *res.Summary.ResourceChanges)
	// The node drops a removed overlay once the last task on it has
	// stopped: give the tasks their stop grace period.
	for _, kind := range []string{"services", "networks", "secrets", "configs"} {
		var left []string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
			if left, err = c.E.List(ctx, kind, "com.docker.stack.namespace", ls.Stack.Prefix); err != nil {
				t.Fatal(err)
			}
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > 0 {
			t.Errorf("destroy left %s: %v", kind, left)
		}
	}
	// Named volumes are the daemon's, made when a task first mounts them;
	// Pulumi never declared them, so destroy leaves them, and their data.
	var vols []string
	for _, svc := range ls.Stack.Services {
		for _, m := range svc.Mounts {
			if m.Type == "volume" && c.E.Do(ctx, "GET", "/volumes/"+m.Source, nil, nil, nil) == nil {
				vols = append(vols, m.Source)
			}
		}
	}
	t.Logf("volumes destroy left, with their data (the daemon's, not Pulumi resources): %v", vols)
}

// removeStackObjects removes what an interrupted run left: services,
// then networks, secrets and configs labelled with the stack's namespace,
// then its volumes.
func removeStackObjects(t *testing.T, c *Cluster, prefix string) {
	ctx := context.Background()
	for _, kind := range []string{"services", "networks", "secrets", "configs", "volumes"} {
		names, err := c.E.List(ctx, kind, "com.docker.stack.namespace", prefix)
		if err != nil {
			continue
		}
		for _, n := range names {
			_ = c.E.Do(ctx, "DELETE", "/"+kind+"/"+n, nil, nil, nil)
		}
		if kind == "services" && len(names) > 0 {
			time.Sleep(5 * time.Second) // tasks stop before networks can go
		}
	}
	for _, v := range []string{"traefik_acme", "prometheus_data", "grafana_data", "redis_data", "redis_gateway_data"} {
		_ = c.E.Do(ctx, "DELETE", "/volumes/"+prefix+"_"+v, nil, nil, nil)
	}
}

// compareWithTranslation compares, field by field, each service the real
// provider created with the spec the swarm proof's translation makes for
// the same program (IDs of networks, secrets and configs mapped to the
// real ones by name).
func compareWithTranslation(t *testing.T, c *Cluster, ls localStack, im images) {
	ctx := context.Background()
	m := recordStack(t, ls, newTestCA(t), im)
	d, err := Declarations(m)
	if err != nil {
		t.Fatal(err)
	}
	nets, secs, cfgs := IDs{}, IDs{}, IDs{}
	realID := func(kind, name string) string {
		var out []struct {
			ID   string
			Name string
			Spec struct{ Name string }
		}
		if err := c.E.Do(ctx, "GET", "/"+kind, nil, nil, &out); err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			if o.Name+o.Spec.Name == name || strings.HasPrefix(o.Spec.Name, name+"-") {
				return o.ID
			}
		}
		t.Fatalf("no %s named %s", kind, name)
		return ""
	}
	for _, n := range d.Networks {
		nets[n.MockID] = realID("networks", n.Spec.Name)
	}
	for _, s := range d.Secrets {
		secs[s.MockID] = realID("secrets", s.Name) // auto-named after the logical name
	}
	for _, s := range d.Configs {
		cfgs[s.MockID] = realID("configs", s.Name)
	}
	for _, ds := range d.Services {
		want, err := ServiceFromInputs(ds.Inputs, nets, secs, cfgs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.E.Service(ctx, want.Name)
		if err != nil {
			t.Fatalf("service %s: %v", want.Name, err)
		}
		for _, diff := range specDiff(normalize(want), normalize(got.Spec)) {
			t.Errorf("%s: %s", want.Name, diff)
		}
	}
}

// normalize sorts what the two sides may order differently, fills in
// what the engine fills in when a request leaves it out (isolation,
// runtime, stop grace period, DNS config), and drops the secret and
// config names, which the translation does not know (their IDs are
// compared).
func normalize(s ServiceSpec) map[string]any {
	cs := &s.TaskTemplate.ContainerSpec
	if cs.Isolation == "" {
		cs.Isolation = "default"
	}
	if s.TaskTemplate.Runtime == "" {
		s.TaskTemplate.Runtime = "container"
	}
	if cs.StopGracePeriod == nil {
		cs.StopGracePeriod = new(int64)
	}
	if cs.DNSConfig == nil {
		cs.DNSConfig = &DNSConfig{}
	}
	sort.Slice(s.TaskTemplate.Networks, func(i, j int) bool {
		return s.TaskTemplate.Networks[i].Target < s.TaskTemplate.Networks[j].Target
	})
	sort.Strings(cs.Env)
	for i := range cs.Secrets {
		cs.Secrets[i].SecretName = ""
	}
	for i := range cs.Configs {
		cs.Configs[i].ConfigName = ""
	}
	sort.Slice(cs.Secrets, func(i, j int) bool { return cs.Secrets[i].File.Name < cs.Secrets[j].File.Name })
	b, _ := json.Marshal(s)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// specDiff lists the paths where want and got differ.
func specDiff(want, got any) []string {
	var out []string
	var walk func(path string, w, g any)
	walk = func(path string, w, g any) {
		wm, wok := w.(map[string]any)
		gm, gok := g.(map[string]any)
		if wok && gok {
			keys := map[string]bool{}
			for k := range wm {
				keys[k] = true
			}
			for k := range gm {
				keys[k] = true
			}
			for _, k := range slices.Sorted(func(yield func(string) bool) {
				for k := range keys {
					if !yield(k) {
						return
					}
				}
			}) {
				walk(path+"."+k, wm[k], gm[k])
			}
			return
		}
		if !reflect.DeepEqual(w, g) {
			wj, _ := json.Marshal(w)
			gj, _ := json.Marshal(g)
			out = append(out, fmt.Sprintf("%s: translation %s, real provider %s", strings.TrimPrefix(path, "."), wj, gj))
		}
	}
	walk("", want, got)
	return out
}
