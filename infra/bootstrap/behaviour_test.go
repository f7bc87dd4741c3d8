package bootstrap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const testToken = "SWMTKN-1-0123456789abcdefghijklmnopqrstuvwxyz-abcdefghijklmnopqrstuvwx"

// runAsRoot runs a rendered script exactly as a remote.Command would (through
// asRoot's `sudo -n bash -c '…'`), against the docker test double in
// testdata/fakebin. It returns stdout, stderr, the docker calls made and the
// exit error.
// state pre-creates files in the double's state directory ($FAKE_STATE_DIR).
func runAsRoot(t *testing.T, script, stdin string, state map[string]string, env ...string) (stdout, stderr string, calls []string, err error) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed: scripts cannot run")
	}
	fakebin, _ := filepath.Abs(filepath.Join("testdata", "fakebin"))
	log := filepath.Join(t.TempDir(), "docker.log")
	stateDir := t.TempDir()
	for name, content := range state {
		if err := os.WriteFile(filepath.Join(stateDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "-c", asRoot(script))
	cmd.Env = append([]string{"PATH=" + fakebin + ":" + os.Getenv("PATH"), "FAKE_LOG=" + log, "FAKE_STATE_DIR=" + stateDir}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	raw, _ := os.ReadFile(log)
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if l != "" {
			calls = append(calls, l)
		}
	}
	return o.String(), e.String(), calls, err
}

func hasCall(calls []string, prefix string) bool {
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func TestJoinScriptBehaviour(t *testing.T) {
	script, err := joinParams{ManagerAddr: "10.148.0.2", ManagerNodeID: "managernodeid01"}.script()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		stdin     string
		env       []string
		wantErr   bool
		wantJoin  bool
		wantLeave bool
		wantOut   string
	}{
		{name: "fresh worker joins the manager", stdin: testToken + "\n",
			env: []string{"FAKE_STATE=inactive", "FAKE_NODE_ID=workernodeid02"}, wantJoin: true, wantOut: "workernodeid02\n"},
		{name: "already in this swarm: no-op", stdin: testToken + "\n",
			env: []string{"FAKE_STATE=active", "FAKE_MANAGERS=managernodeid01", "FAKE_NODE_ID=workernodeid02"}, wantOut: "workernodeid02\n"},
		{name: "in another swarm (manager rebuilt): leave, then join", stdin: testToken + "\n",
			env: []string{"FAKE_STATE=active", "FAKE_MANAGERS=oldmanager0001", "FAKE_NODE_ID=workernodeid03"}, wantJoin: true, wantLeave: true, wantOut: "workernodeid03\n"},
		{name: "daemon error echoing the token is redacted", stdin: testToken + "\n",
			env: []string{"FAKE_STATE=inactive", "FAKE_JOIN_FAIL=1"}, wantJoin: true, wantErr: true},
		{name: "no token on stdin", stdin: "", env: []string{"FAKE_STATE=inactive"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, calls, err := runAsRoot(t, script, tc.stdin, nil, tc.env...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v\nstderr: %s", err, tc.wantErr, errOut)
			}
			if got := hasCall(calls, "docker swarm join --token "+testToken+" 10.148.0.2:2377"); got != tc.wantJoin {
				t.Errorf("joined = %v, want %v; calls %q", got, tc.wantJoin, calls)
			}
			if got := hasCall(calls, "docker swarm leave --force"); got != tc.wantLeave {
				t.Errorf("left = %v, want %v; calls %q", got, tc.wantLeave, calls)
			}
			if !tc.wantErr && out != tc.wantOut {
				t.Errorf("stdout = %q, want %q", out, tc.wantOut)
			}
			if strings.Contains(out+errOut, testToken) || strings.Contains(out+errOut, "SWMTKN") {
				t.Errorf("the token leaked into the output:\nstdout: %s\nstderr: %s", out, errOut)
			}
		})
	}
}

func TestLabelScriptBehaviour(t *testing.T) {
	l := Label{"instance", "translation02"}
	add, err := labelScript("add", "workernodeid02", l)
	if err != nil {
		t.Fatal(err)
	}
	remove, err := labelScript("remove", "workernodeid02", l)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		script   string
		env      []string
		want     string // a docker call that must happen
		mustNot  string // a docker call that must not happen
		wantFail bool
	}{
		{name: "add sets the label on the node ID", script: add, want: "docker node update --label-add instance=translation02 workernodeid02"},
		{name: "remove drops a present label", script: remove, env: []string{"FAKE_LABELS=instance media"},
			want: "docker node update --label-rm instance workernodeid02"},
		{name: "remove of an absent label changes nothing", script: remove, env: []string{"FAKE_LABELS=media"},
			mustNot: "docker node update"},
		{name: "remove on a node that left the swarm succeeds", script: remove, env: []string{"FAKE_NO_NODE=1"},
			mustNot: "docker node update"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, calls, err := runAsRoot(t, tc.script, "", nil, tc.env...)
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, errOut)
			}
			if tc.want != "" && !hasCall(calls, tc.want) {
				t.Errorf("missing call %q; calls %q", tc.want, calls)
			}
			if tc.mustNot != "" && hasCall(calls, tc.mustNot) {
				t.Errorf("unexpected call %q; calls %q", tc.mustNot, calls)
			}
		})
	}
}

func TestInitScriptBehaviour(t *testing.T) {
	script, err := initParams{AdvertiseAddr: "10.148.0.2", MTU: 1460, Subnet: "10.148.0.0/20"}.script()
	if err != nil {
		t.Fatal(err)
	}
	const initCall = "docker swarm init --advertise-addr 10.148.0.2 --listen-addr 10.148.0.2:2377 --default-addr-pool 10.200.0.0/16 --default-addr-pool-mask-length 24"
	const recreate = "docker network create --driver overlay --ingress --opt com.docker.network.driver.mtu=1460 ingress"
	for _, tc := range []struct {
		name      string
		state     map[string]string
		env       []string
		wantErr   string
		wantInit  bool
		wantRm    bool
		wantNewIn bool
	}{
		{name: "fresh manager: init, then ingress with the VPC MTU",
			env: []string{"FAKE_STATE=inactive"}, state: map[string]string{"ingress.mtu": ""}, wantInit: true, wantRm: true, wantNewIn: true},
		{name: "existing manager with the right ingress: nothing to do",
			env: []string{"FAKE_STATE=active", "FAKE_CONTROL=true"}, state: map[string]string{"ingress.mtu": "1460"}},
		{name: "existing manager, ingress of an older MTU, no services: recreated",
			env: []string{"FAKE_STATE=active", "FAKE_CONTROL=true"}, state: map[string]string{"ingress.mtu": "1500"}, wantRm: true, wantNewIn: true},
		{name: "ingress of an older MTU with services running: refuses",
			env: []string{"FAKE_STATE=active", "FAKE_CONTROL=true", "FAKE_SERVICES=svc1"}, state: map[string]string{"ingress.mtu": "1500"},
			wantErr: "services exist"},
		{name: "a worker of another swarm: refuses",
			env: []string{"FAKE_STATE=active", "FAKE_CONTROL=false"}, wantErr: "worker of another swarm"},
		{name: "a half-joined node: refuses",
			env: []string{"FAKE_STATE=pending"}, wantErr: "swarm state is 'pending'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, calls, err := runAsRoot(t, script, "", tc.state, append(tc.env, "FAKE_NODE_ID=managernode01", "FAKE_CLUSTER_ID=clusterid0001")...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(errOut, tc.wantErr) {
					t.Fatalf("err %v, stderr %q; want failure saying %q", err, errOut, tc.wantErr)
				}
				if hasCall(calls, "docker swarm init") || hasCall(calls, "docker network rm") {
					t.Errorf("changed a swarm it refused: %q", calls)
				}
				return
			}
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, errOut)
			}
			if got := hasCall(calls, initCall); got != tc.wantInit {
				t.Errorf("init = %v, want %v; calls %q", got, tc.wantInit, calls)
			}
			if got := hasCall(calls, "docker network rm ingress"); got != tc.wantRm {
				t.Errorf("ingress removed = %v, want %v; calls %q", got, tc.wantRm, calls)
			}
			if got := hasCall(calls, recreate); got != tc.wantNewIn {
				t.Errorf("ingress created = %v, want %v; calls %q", got, tc.wantNewIn, calls)
			}
			if _, _, err := parseInit(out); err != nil || out != "clusterid0001 managernode01\n" {
				t.Errorf("stdout %q is not what the program parses: %v", out, err)
			}
		})
	}
}

func TestMemberScriptBehaviour(t *testing.T) {
	keep, err := memberScript("keep", "newid0000002", "prod-translation02")
	if err != nil {
		t.Fatal(err)
	}
	remove, err := memberScript("remove", "newid0000002", "prod-translation02")
	if err != nil {
		t.Fatal(err)
	}
	nodes := "mgr000000001 prod-translation01 Ready;oldid0000002 prod-translation02 Down;newid0000002 prod-translation02 Ready;" +
		"other0000003 prod-translation03 Down;oldid0000009 prod-translation02x Down"
	_, errOut, calls, err := runAsRoot(t, keep, "", nil, "FAKE_NODES="+nodes)
	if err != nil {
		t.Fatalf("keep: %v\n%s", err, errOut)
	}
	var removed []string
	for _, c := range calls {
		if strings.HasPrefix(c, "docker node rm") {
			removed = append(removed, c)
		}
	}
	// Only the stale entry of this hostname goes: not the live node, not
	// another VM's, not a hostname that merely starts the same.
	if strings.Join(removed, ";") != "docker node rm oldid0000002" {
		t.Errorf("keep removed %q, want only the stale prod-translation02 entry", removed)
	}

	_, _, calls, err = runAsRoot(t, remove, "", nil)
	if err != nil || !hasCall(calls, "docker node rm --force newid0000002") {
		t.Errorf("remove: %v; calls %q", err, calls)
	}
	_, _, calls, err = runAsRoot(t, remove, "", nil, "FAKE_NO_NODE=1")
	if err != nil || hasCall(calls, "docker node rm") {
		t.Errorf("remove of a node already gone: %v; calls %q", err, calls)
	}
}
