package bootstrap

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jbcalling/platform/infra"
)

type boot struct {
	calls   []string
	daemon  map[string]any
	version string
	stdout  string
}

// bootTimes runs the rendered startup scripts as consecutive boots of one VM
// (testdata/startup-driver.sh in a private mount namespace, fakes for
// apt-get, dpkg-query, systemctl and docker).
func bootTimes(t *testing.T, scripts ...string) []boot {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private mount namespace (the startup script writes /etc/docker, /var/lib/platform, /run)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	dir := t.TempDir()
	var paths []string
	for i, s := range scripts {
		p := filepath.Join(dir, "startup-"+strconv.Itoa(i)+".sh")
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out := filepath.Join(dir, "out")
	fakebin, _ := filepath.Abs(filepath.Join("testdata", "fakebin"))
	driver, _ := filepath.Abs(filepath.Join("testdata", "startup-driver.sh"))
	args := append([]string{"--mount", "--propagation", "private", "bash", driver, out, fakebin}, paths...)
	if b, err := exec.Command("unshare", args...).CombinedOutput(); err != nil {
		if strings.Contains(string(b), "mount:") || strings.Contains(string(b), "unshare:") {
			t.Skipf("cannot make a private mount namespace with overlays here: %s", b)
		}
		logs, _ := filepath.Glob(filepath.Join(out, "*", "std*"))
		for _, l := range logs {
			c, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, c)
		}
		t.Fatalf("startup driver: %v\n%s", err, b)
	}
	var boots []boot
	for i := range scripts {
		d := filepath.Join(out, strconv.Itoa(i+1))
		var b boot
		calls, _ := os.ReadFile(filepath.Join(d, "calls"))
		b.calls = strings.Split(strings.TrimSpace(string(calls)), "\n")
		raw, _ := os.ReadFile(filepath.Join(d, "daemon.json"))
		if err := json.Unmarshal(raw, &b.daemon); err != nil {
			t.Fatalf("boot %d: daemon.json is not JSON: %v\n%s", i+1, err, raw)
		}
		v, _ := os.ReadFile(filepath.Join(d, "bootstrap.version"))
		b.version = strings.TrimSpace(string(v))
		so, _ := os.ReadFile(filepath.Join(d, "stdout"))
		b.stdout = string(so)
		boots = append(boots, b)
	}
	return boots
}

func TestStartupScriptBoots(t *testing.T) {
	p1460 := StartupParams{NodeName: "translation02", Role: infra.RoleWorker, MTU: 1460}
	p1500 := p1460
	p1500.MTU = 1500
	s1460, err := StartupScript(p1460)
	if err != nil {
		t.Fatal(err)
	}
	s1500, err := StartupScript(p1500)
	if err != nil {
		t.Fatal(err)
	}
	boots := bootTimes(t, s1460, s1460, s1500)

	first, again, changed := boots[0], boots[1], boots[2]
	// First boot: install, configure, start, gwbridge with the MTU, version.
	for _, want := range []string{
		"apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends docker.io ca-certificates",
		"systemctl start docker.service",
		"docker network create --driver bridge --opt com.docker.network.bridge.name=docker_gwbridge --opt com.docker.network.bridge.enable_icc=false --opt com.docker.network.bridge.enable_ip_masquerade=true --opt com.docker.network.driver.mtu=1460 docker_gwbridge",
	} {
		if !hasCall(first.calls, want) {
			t.Errorf("first boot: no %q; calls %q", want, first.calls)
		}
	}
	wantDaemon := map[string]any{
		"log-driver": "json-file",
		"log-opts":   map[string]any{"max-size": "10m", "max-file": "3"},
		"mtu":        float64(1460),
	}
	if b, _ := json.Marshal(first.daemon); string(b) != mustJSON(wantDaemon) {
		t.Errorf("daemon.json = %s, want %s", b, mustJSON(wantDaemon))
	}
	if first.version != StartupVersion(p1460) {
		t.Errorf("recorded version %q, want %q", first.version, StartupVersion(p1460))
	}

	// Same script again (a reboot, or engine-ready re-running it): no
	// install, no restart, no new bridge, same config.
	for _, no := range []string{"apt-get", "systemctl restart", "docker network create"} {
		if hasCall(again.calls, no) {
			t.Errorf("second boot with the same script ran %q; calls %q", no, again.calls)
		}
	}
	if mustJSON(again.daemon) != mustJSON(first.daemon) {
		t.Errorf("second boot changed daemon.json")
	}

	// A changed MTU rewrites daemon.json and restarts the running daemon;
	// the existing gwbridge is reported, not torn down under running tasks.
	if changed.daemon["mtu"] != float64(1500) {
		t.Errorf("MTU change: daemon.json mtu = %v", changed.daemon["mtu"])
	}
	if !hasCall(changed.calls, "systemctl restart docker.service") {
		t.Errorf("MTU change did not restart docker; calls %q", changed.calls)
	}
	if hasCall(changed.calls, "docker network rm") || hasCall(changed.calls, "docker network create") {
		t.Errorf("MTU change touched docker_gwbridge; calls %q", changed.calls)
	}
	if !strings.Contains(changed.stdout, "WARNING: docker_gwbridge has MTU '1460', want 1500") {
		t.Errorf("MTU change: no warning about docker_gwbridge:\n%s", changed.stdout)
	}
	if changed.version != StartupVersion(p1500) {
		t.Errorf("recorded version %q after the change, want %q", changed.version, StartupVersion(p1500))
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
