package bootstrap

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jbcalling/platform/infra"
)

type run struct {
	rc     string // exit status
	calls  []string
	stdout string
	stderr string
	files  map[string]string // captured path (base name) → content
	modes  map[string]string // captured path → octal mode
}

// nodeRun is one script run on the simulated VM, with optional stdin and
// environment for the test doubles (FAKE_*).
type nodeRun struct {
	script, stdin string
	env           []string
}

// onOneVM runs rendered scripts in order on one simulated VM
// (testdata/node-driver.sh in a private mount namespace, with the test
// doubles in testdata/fakebin) and returns what each run did and left in
// the capture paths.
func onOneVM(t *testing.T, capture []string, runs ...nodeRun) []run {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private mount namespace (the scripts write /etc, /var/lib and /run)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	dir := t.TempDir()
	var paths []string
	for i, r := range runs {
		p := filepath.Join(dir, "script-"+strconv.Itoa(i)+".sh")
		body := r.script
		for _, e := range r.env {
			k, v, _ := strings.Cut(e, "=")
			body = "export " + k + "=" + shellQuote(v) + "\n" + body
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		if r.stdin != "" {
			if err := os.WriteFile(p+".stdin", []byte(r.stdin), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		paths = append(paths, p)
	}
	out := filepath.Join(dir, "out")
	fakebin, _ := filepath.Abs(filepath.Join("testdata", "fakebin"))
	driver, _ := filepath.Abs(filepath.Join("testdata", "node-driver.sh"))
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "bash", driver, out, fakebin}, paths...)...)
	cmd.Env = append(os.Environ(), "CAPTURE="+strings.Join(capture, " "))
	if b, err := cmd.CombinedOutput(); err != nil {
		if strings.HasPrefix(string(b), "mount:") || strings.HasPrefix(string(b), "unshare:") {
			t.Skipf("cannot make a private mount namespace with overlays here: %s", b)
		}
		logs, _ := filepath.Glob(filepath.Join(out, "*", "std*"))
		for _, l := range logs {
			c, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, c)
		}
		t.Fatalf("node driver: %v\n%s", err, b)
	}
	var res []run
	for i := range runs {
		d := filepath.Join(out, strconv.Itoa(i+1))
		read := func(name string) string { b, _ := os.ReadFile(filepath.Join(d, name)); return string(b) }
		r := run{rc: strings.TrimSpace(read("rc")), stdout: read("stdout"), stderr: read("stderr"), files: map[string]string{}, modes: map[string]string{}}
		r.calls = strings.Split(strings.TrimSpace(read("calls")), "\n")
		for _, p := range capture {
			if c, err := os.ReadFile(filepath.Join(d, filepath.Base(p))); err == nil {
				r.files[filepath.Base(p)] = string(c)
			}
		}
		for _, l := range strings.Split(strings.TrimSpace(read("modes")), "\n") {
			if p, m, ok := strings.Cut(l, " "); ok {
				r.modes[p] = m
			}
		}
		res = append(res, r)
	}
	return res
}

func daemonJSON(t *testing.T, r run) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.files["daemon.json"]), &m); err != nil {
		t.Fatalf("daemon.json is not JSON: %v\n%s", err, r.files["daemon.json"])
	}
	return m
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
	boots := onOneVM(t, []string{"/etc/docker/daemon.json", "/var/lib/platform/bootstrap.version", "/etc/sysctl.d/60-platform-sfu.conf"},
		nodeRun{script: s1460}, nodeRun{script: s1460}, nodeRun{script: s1500})
	first, again, changed := boots[0], boots[1], boots[2]
	for i, b := range boots {
		if b.rc != "0" {
			t.Fatalf("boot %d exited %s:\n%s", i+1, b.rc, b.stdout+b.stderr)
		}
	}
	version := func(r run) string { return strings.TrimSpace(r.files["bootstrap.version"]) }
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
	// The host lets the SFU's ICE socket have its 4 MiB buffers, at every boot.
	for i, b := range boots {
		if got := b.files["60-platform-sfu.conf"]; got != "net.core.rmem_max = 4194304\nnet.core.wmem_max = 4194304\n" {
			t.Errorf("boot %d: sysctl file %q", i+1, got)
		}
		if !hasCall(b.calls, "sysctl -q -p /etc/sysctl.d/60-platform-sfu.conf") {
			t.Errorf("boot %d: socket buffer limits not applied; calls %q", i+1, b.calls)
		}
	}
	wantDaemon := map[string]any{
		"log-driver": "json-file",
		"log-opts":   map[string]any{"max-size": "10m", "max-file": "3"},
		"mtu":        float64(1460),
	}
	if b, _ := json.Marshal(daemonJSON(t, first)); string(b) != mustJSON(wantDaemon) {
		t.Errorf("daemon.json = %s, want %s", b, mustJSON(wantDaemon))
	}
	if version(first) != StartupVersion(p1460) {
		t.Errorf("recorded version %q, want %q", version(first), StartupVersion(p1460))
	}

	// Same script again (a reboot, or engine-ready re-running it): no
	// install, no restart, no new bridge, same config.
	for _, no := range []string{"apt-get", "systemctl restart", "docker network create"} {
		if hasCall(again.calls, no) {
			t.Errorf("second boot with the same script ran %q; calls %q", no, again.calls)
		}
	}
	if again.files["daemon.json"] != first.files["daemon.json"] {
		t.Errorf("second boot changed daemon.json")
	}

	// A changed MTU rewrites daemon.json and restarts the running daemon;
	// the existing gwbridge is reported, not torn down under running tasks.
	if mtu := daemonJSON(t, changed)["mtu"]; mtu != float64(1500) {
		t.Errorf("MTU change: daemon.json mtu = %v", mtu)
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
	if version(changed) != StartupVersion(p1500) {
		t.Errorf("recorded version %q after the change, want %q", version(changed), StartupVersion(p1500))
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The Docker API step: key material from stdin into root-only files, a
// drop-in that keeps socket activation and adds tcp/2376 with --tlsverify,
// and a restart only when something changed.
func TestDockerTLSScriptOnVM(t *testing.T) {
	script, err := dockerTLSScript("10.148.0.2")
	if err != nil {
		t.Fatal(err)
	}
	pem := func(kind, body string) string {
		return "-----BEGIN " + kind + "-----\n" + body + "\n-----END " + kind + "-----\n"
	}
	stdin := func(ca, cert, key string) string {
		enc := base64.StdEncoding.EncodeToString
		return enc([]byte(ca)) + "\n" + enc([]byte(cert)) + "\n" + enc([]byte(key)) + "\n"
	}
	ca, cert := pem("CERTIFICATE", "Y2E="), pem("CERTIFICATE", "c2VydmVy")
	key1, key2 := pem("EC PRIVATE KEY", "a2V5MQ=="), pem("EC PRIVATE KEY", "a2V5Mg==")
	capture := []string{"/etc/docker/tls/ca.pem", "/etc/docker/tls/server-cert.pem", "/etc/docker/tls/server-key.pem",
		"/etc/systemd/system/docker.service.d/platform-tls.conf", "/etc/docker/tls"}
	runs := onOneVM(t, capture,
		nodeRun{script: script, stdin: stdin(ca, cert, key1)},
		nodeRun{script: script, stdin: stdin(ca, cert, key1)},
		nodeRun{script: script, stdin: stdin(ca, cert, key2)},
		nodeRun{script: script, stdin: "not base64 at all\n"},
	)
	first, same, rotated, garbage := runs[0], runs[1], runs[2], runs[3]
	for i, r := range runs[:3] {
		if r.rc != "0" {
			t.Fatalf("run %d exited %s:\n%s", i+1, r.rc, r.stdout+r.stderr)
		}
	}
	if garbage.rc == "0" {
		t.Errorf("garbage on stdin: exit 0")
	}

	if first.files["server-key.pem"] != key1 || first.files["ca.pem"] != ca || first.files["server-cert.pem"] != cert {
		t.Errorf("files do not hold what came on stdin: %q", first.files)
	}
	for _, p := range []string{"/etc/docker/tls/ca.pem", "/etc/docker/tls/server-cert.pem", "/etc/docker/tls/server-key.pem"} {
		if first.modes[p] != "600" {
			t.Errorf("%s has mode %s, want 600", p, first.modes[p])
		}
	}
	if first.modes["/etc/docker/tls"] != "700" {
		t.Errorf("/etc/docker/tls has mode %s, want 700", first.modes["/etc/docker/tls"])
	}
	dropin := first.files["platform-tls.conf"]
	for _, want := range []string{
		"[Service]\nExecStart=\nExecStart=",
		"/dockerd -H fd:// -H tcp://10.148.0.2:2376 -H tcp://127.0.0.1:2376 --tlsverify --tlscacert=/etc/docker/tls/ca.pem --tlscert=/etc/docker/tls/server-cert.pem --tlskey=/etc/docker/tls/server-key.pem\n",
	} {
		if !strings.Contains(dropin, want) {
			t.Errorf("drop-in lacks %q:\n%s", want, dropin)
		}
	}
	if !hasCall(first.calls, "systemctl daemon-reload") || !hasCall(first.calls, "systemctl restart docker.service") {
		t.Errorf("first run did not reload and restart docker: %q", first.calls)
	}
	if hasCall(same.calls, "systemctl restart") {
		t.Errorf("same material restarted docker: %q", same.calls)
	}
	if rotated.files["server-key.pem"] != key2 || !hasCall(rotated.calls, "systemctl restart docker.service") {
		t.Errorf("a new key was not installed with a restart: %q", rotated.calls)
	}
	if !strings.Contains(garbage.stderr+garbage.stdout, "not a base64 PEM block") && !strings.Contains(garbage.stderr, "stdin ended") {
		t.Errorf("garbage on stdin was not rejected: %s", garbage.stderr)
	}
	if garbage.files["server-key.pem"] != key2 {
		t.Errorf("garbage on stdin replaced the installed key")
	}
	for _, r := range runs {
		if strings.Contains(r.stdout+r.stderr, "a2V5") {
			t.Errorf("key material in the command output: %s %s", r.stdout, r.stderr)
		}
	}
}

// engine ready: waits for the boot-time run, re-runs a startup script whose
// version changed since boot, and fails clearly when it cannot be applied.
func TestEngineReadyOnVM(t *testing.T) {
	const want = "0123456789abcdef"
	script, err := engineReadyScript(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		env       []string
		wantRC    string
		wantRuns  int // google_metadata_script_runner calls
		wantInErr string
	}{
		{name: "boot-time run still going: wait for it, no second run",
			env: []string{"FAKE_ACTIVATING=3", "FAKE_BOOT_VERSION=" + want}, wantRC: "0"},
		{name: "metadata changed after boot: re-run the current script",
			env: []string{"FAKE_BOOT_VERSION=oldversion00000", "FAKE_RUNNER_VERSION=" + want}, wantRC: "0", wantRuns: 1},
		{name: "script keeps failing: three attempts, then a clear error",
			env: []string{"FAKE_BOOT_VERSION=oldversion00000"}, wantRC: "1", wantRuns: 3, wantInErr: "startup script version " + want + " was not applied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := onOneVM(t, nil, nodeRun{script: script, env: tc.env})[0]
			if r.rc != tc.wantRC {
				t.Fatalf("exit %s, want %s\n%s%s", r.rc, tc.wantRC, r.stdout, r.stderr)
			}
			runs := 0
			for _, c := range r.calls {
				if strings.HasPrefix(c, "google_metadata_script_runner startup") {
					runs++
				}
			}
			if runs != tc.wantRuns {
				t.Errorf("startup script run %d times, want %d; calls %q", runs, tc.wantRuns, r.calls)
			}
			if tc.wantRC == "0" && strings.TrimSpace(r.stdout) != "20.10.24+dfsg1" {
				t.Errorf("stdout %q, want the engine version", r.stdout)
			}
			if !strings.Contains(r.stderr, tc.wantInErr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tc.wantInErr)
			}
		})
	}
}
