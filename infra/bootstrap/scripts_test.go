package bootstrap

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/internal/pulumitest"
)

// loadConfig parses the repository's real Pulumi.<stack>.yaml the way
// infra.LoadConfig does in a real run.
func loadConfig(t *testing.T, stack string, kv ...string) *infra.Config {
	t.Helper()
	raw := pulumitest.StackConfig(t, stack)
	if _, ok := raw["platform:gcpProject"]; !ok {
		// A throwaway stack (`pulumi stack init ci-123`) has only the keys
		// its creator sets on the command line; these are the required ones.
		raw = pulumitest.With(raw, "platform:gcpProject", "ci-project",
			"platform:cloudflareZoneId", "ci-zone", "platform:adminCidrs", `["198.51.100.0/24"]`)
	}
	raw = pulumitest.With(raw, kv...)
	cfg, err := infra.ParseConfig(stack, func(k string) (string, bool) { v, ok := raw[k]; return v, ok })
	if err != nil {
		t.Fatalf("config of stack %s: %v", stack, err)
	}
	return cfg
}

var stacks = []string{"prod", "staging", "ci-123"}

// renderedScripts is every script the program renders for a stack, by name.
func renderedScripts(t *testing.T, cfg *infra.Config) map[string]string {
	t.Helper()
	out := map[string]string{}
	add := func(name string, s string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = s
	}
	mgr := cfg.Manager()
	for _, n := range cfg.Nodes {
		s, err := StartupScript(startupParams(cfg, n))
		add("startup-"+n.Name, s, err)
		s, err = engineReadyScript(StartupVersion(startupParams(cfg, n)))
		add("engine-ready-"+n.Name, s, err)
		labels, err := NodeLabels(cfg, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range labels {
			s, err = labelScript("add", "nodeid"+n.Name, l)
			add("label-add-"+n.Name+"-"+l.Key, s, err)
			s, err = labelScript("remove", "nodeid"+n.Name, l)
			add("label-remove-"+n.Name+"-"+l.Key, s, err)
		}
		if n.Role == infra.RoleWorker {
			s, err = joinParams{ManagerAddr: cfg.NodeInternalIP(mgr.Name), ManagerNodeID: "managernodeid01"}.script()
			add("join-"+n.Name, s, err)
			s, err = memberScript("keep", "nodeid"+n.Name, cfg.ResourceName(n.Name))
			add("member-keep-"+n.Name, s, err)
			s, err = memberScript("remove", "nodeid"+n.Name, cfg.ResourceName(n.Name))
			add("member-remove-"+n.Name, s, err)
		}
	}
	s, err := dockerTLSScript("10.148.0.2")
	add("docker-tls", s, err)
	s, err = initParams{AdvertiseAddr: cfg.NodeInternalIP(mgr.Name), MTU: cfg.MTU, Subnet: cfg.SubnetCIDR}.script()
	add("init", s, err)
	return out
}

func shellcheck(t *testing.T, name string, script []byte) {
	t.Helper()
	path, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed (apt-get install shellcheck; .ci/run installs it): scripts not linted")
	}
	cmd := exec.Command(path, "--shell=bash", "--severity=style", "-")
	cmd.Stdin = bytes.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck %s: %v\n%s", name, err, out)
	}
}

func TestShellcheckEmbeddedScripts(t *testing.T) {
	entries, err := fs.ReadDir(scriptFS, "scripts")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no embedded scripts: %v", err)
	}
	for _, e := range entries {
		raw, _ := scriptFS.ReadFile("scripts/" + e.Name())
		t.Run(e.Name(), func(t *testing.T) { shellcheck(t, e.Name(), raw) })
	}
	// The test doubles and the driver are shell too.
	fixtures, _ := filepath.Glob(filepath.Join("testdata", "fakebin", "*"))
	driver, _ := filepath.Glob(filepath.Join("testdata", "*.sh"))
	if len(fixtures) < 5 || len(driver) == 0 {
		t.Fatalf("test fixtures missing: %v %v", fixtures, driver)
	}
	for _, f := range append(fixtures, driver...) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(f, func(t *testing.T) { shellcheck(t, f, raw) })
	}
}

func TestShellcheckRenderedScripts(t *testing.T) {
	for _, stack := range stacks {
		for name, s := range renderedScripts(t, loadConfig(t, stack)) {
			t.Run(stack+"/"+name, func(t *testing.T) {
				shellcheck(t, name, []byte(s))
				// The exact command line a remote.Command sends.
				shellcheck(t, name+" (as root)", []byte("#!/bin/bash\n"+asRoot(s)+"\n"))
			})
		}
	}
}

// Nothing a startup script carries may be secret: GCE metadata is readable by
// every process on the VM and by anyone with compute.instances.get.
func TestStartupScriptPerNode(t *testing.T) {
	for _, stack := range stacks {
		cfg := loadConfig(t, stack)
		scripts, err := StartupScripts(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(scripts) != len(cfg.Nodes) {
			t.Fatalf("%s: %d scripts for %d nodes", stack, len(scripts), len(cfg.Nodes))
		}
		for _, n := range cfg.Nodes {
			s := scripts[n.Name]
			t.Run(stack+"/"+n.Name, func(t *testing.T) {
				for _, want := range []string{
					"readonly NODE_NAME='" + n.Name + "'",
					"readonly ROLE='" + string(n.Role) + "'",
					"readonly MTU='" + strconv.Itoa(cfg.MTU) + "'",
					"readonly SCRIPT_VERSION='" + StartupVersion(startupParams(cfg, n)) + "'",
					"readonly LOG_MAX_SIZE='10m'",
					"readonly LOG_MAX_FILE='3'",
					`"mtu": $MTU`,
					`"max-size": "$LOG_MAX_SIZE"`,
					"com.docker.network.driver.mtu=\"$MTU\"",
					"apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends docker.io",
				} {
					if !strings.Contains(s, want) {
						t.Errorf("startup script lacks %q", want)
					}
				}
				if strings.Contains(s, paramsMarker) {
					t.Errorf("parameter marker left in the rendered script")
				}
				for _, secret := range []string{"SWMTKN", "PRIVATE KEY", "--token", "join-token", pulumitest.SecretPlaceholder} {
					if strings.Contains(s, secret) {
						t.Errorf("startup script contains %q", secret)
					}
				}
				// Membership is the program's job, not the boot script's.
				for _, no := range []string{"swarm init", "swarm join", `"live-restore"`} {
					if strings.Contains(s, no) {
						t.Errorf("startup script contains %q", no)
					}
				}
			})
		}
	}
}

func TestStartupScriptRejectsBadParams(t *testing.T) {
	ok := StartupParams{NodeName: "translation01", Role: infra.RoleManager, MTU: 1460}
	for _, tc := range []struct {
		name string
		edit func(*StartupParams)
		want string
	}{
		{"empty name", func(p *StartupParams) { p.NodeName = "" }, "empty node name"},
		{"name with quote", func(p *StartupParams) { p.NodeName = "a'b" }, "not a lowercase hostname"},
		{"uppercase name", func(p *StartupParams) { p.NodeName = "Translation01" }, "not a lowercase hostname"},
		{"unknown role", func(p *StartupParams) { p.Role = "boss" }, `role "boss"`},
		{"MTU too small", func(p *StartupParams) { p.MTU = 1299 }, "MTU 1299 is outside 1300-8896"},
		{"MTU too large", func(p *StartupParams) { p.MTU = 9000 }, "MTU 9000 is outside 1300-8896"},
		{"MTU unset", func(p *StartupParams) { p.MTU = 0 }, "MTU 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.edit(&p)
			s, err := StartupScript(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartupScript(%+v) = %d bytes, %v; want error containing %q", p, len(s), err, tc.want)
			}
		})
	}
	if _, err := StartupScript(ok); err != nil {
		t.Fatalf("valid params rejected: %v", err)
	}
}

// The engine-ready step reruns the startup script exactly when its version
// changes, so the version must follow every parameter and nothing else.
func TestStartupVersion(t *testing.T) {
	base := StartupParams{NodeName: "translation01", Role: infra.RoleManager, MTU: 1460}
	if first, again := StartupVersion(base), StartupVersion(base); first != again {
		t.Fatal("version is not deterministic")
	}
	for _, p := range []StartupParams{
		{NodeName: "translation02", Role: infra.RoleManager, MTU: 1460},
		{NodeName: "translation01", Role: infra.RoleWorker, MTU: 1460},
		{NodeName: "translation01", Role: infra.RoleManager, MTU: 1500},
	} {
		if StartupVersion(p) == StartupVersion(base) {
			t.Errorf("%+v has the same version as %+v", p, base)
		}
	}
}

func TestInitScript(t *testing.T) {
	for _, stack := range stacks {
		cfg := loadConfig(t, stack)
		s := renderedScripts(t, cfg)["init"]
		for _, want := range []string{
			"readonly ADVERTISE_ADDR='" + cfg.ManagerInternalIP() + "'",
			"readonly MTU='" + strconv.Itoa(cfg.MTU) + "'",
			"readonly ADDR_POOL='" + OverlayPool + "'",
			`--advertise-addr "$ADVERTISE_ADDR"`,
			`--opt com.docker.network.driver.mtu="$MTU" ingress`,
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: init script lacks %q", stack, want)
			}
		}
	}
	for _, tc := range []struct {
		p    initParams
		want string
	}{
		{initParams{AdvertiseAddr: "", MTU: 1460, Subnet: "10.148.0.0/20"}, "advertise address"},
		{initParams{AdvertiseAddr: "10.148.0.2; rm -rf /", MTU: 1460, Subnet: "10.148.0.0/20"}, "not an IP address"},
		{initParams{AdvertiseAddr: "10.148.0.2", MTU: 1200, Subnet: "10.148.0.0/20"}, "MTU 1200"},
		{initParams{AdvertiseAddr: "10.200.0.2", MTU: 1460, Subnet: "10.200.0.0/20"}, "overlaps the Swarm overlay pool"},
		{initParams{AdvertiseAddr: "10.0.0.2", MTU: 1460, Subnet: "10.0.0.0/8"}, "overlaps the Swarm overlay pool"},
	} {
		if _, err := tc.p.script(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.p, err, tc.want)
		}
	}
}

func TestJoinScriptTargetsManager(t *testing.T) {
	for _, stack := range stacks {
		cfg := loadConfig(t, stack)
		scripts := renderedScripts(t, cfg)
		for _, n := range cfg.Nodes {
			s, ok := scripts["join-"+n.Name]
			if n.Role == infra.RoleManager {
				if ok {
					t.Errorf("%s: the manager %s got a join script", stack, n.Name)
				}
				continue
			}
			for _, want := range []string{
				"readonly MANAGER_ADDR='" + cfg.ManagerInternalIP() + "'",
				"readonly MANAGER_NODE_ID='managernodeid01'",
				`"$MANAGER_ADDR:2377"`,
			} {
				if !strings.Contains(s, want) {
					t.Errorf("%s/%s: join script lacks %q", stack, n.Name, want)
				}
			}
		}
	}
}

// Each node's label scripts carry exactly that node's labels and ID.
func TestLabelScriptsPerNode(t *testing.T) {
	cfg := loadConfig(t, "prod")
	scripts := renderedScripts(t, cfg)
	want := map[string][]string{
		"translation01": {"edge=true", "instance=translation01"},
		"translation02": {"instance=translation02", "media=true"},
		"translation03": {"instance=translation03"},
	}
	for node, labels := range want {
		n, _ := cfg.Node(node)
		got, err := NodeLabels(cfg, n)
		if err != nil {
			t.Fatal(err)
		}
		var gotS []string
		for _, l := range got {
			gotS = append(gotS, l.Key+"="+l.Value)
			s := scripts["label-add-"+node+"-"+l.Key]
			for _, w := range []string{"readonly ACTION='add'", "readonly NODE_ID='nodeid" + node + "'", "readonly KEY='" + l.Key + "'", "readonly VALUE='" + l.Value + "'"} {
				if !strings.Contains(s, w) {
					t.Errorf("label %s on %s: script lacks %q", l.Key, node, w)
				}
			}
		}
		if strings.Join(gotS, ",") != strings.Join(labels, ",") {
			t.Errorf("%s labels = %v, want %v", node, gotS, labels)
		}
	}
}

func TestNodeLabelsRejectsBadKeys(t *testing.T) {
	cfg := loadConfig(t, "prod")
	for _, l := range []string{"bad key=x", "-x=y", "a/b=c"} {
		n := infra.Node{Name: "translation09", Role: infra.RoleWorker, Labels: []string{l}}
		if _, err := NodeLabels(cfg, n); err == nil || !strings.Contains(err.Error(), "translation09") {
			t.Errorf("label %q: err %v, want an error naming the node", l, err)
		}
	}
}

func TestRenderRejectsLineBreaks(t *testing.T) {
	if _, err := labelScript("add", "nodeid01234", Label{"k", "a\nb"}); err == nil {
		t.Fatal("a value with a line break was rendered")
	}
	s, err := labelScript("add", "nodeid01234", Label{"k", "it's"})
	if err != nil || !strings.Contains(s, `readonly VALUE='it'\''s'`) {
		t.Fatalf("quote not escaped: %v\n%s", err, s)
	}
}
