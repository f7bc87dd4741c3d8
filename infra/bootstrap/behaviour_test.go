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
func runAsRoot(t *testing.T, script, stdin string, env ...string) (stdout, stderr string, calls []string, err error) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed: scripts cannot run")
	}
	fakebin, _ := filepath.Abs(filepath.Join("testdata", "fakebin"))
	log := filepath.Join(t.TempDir(), "docker.log")
	cmd := exec.Command("bash", "-c", asRoot(script))
	cmd.Env = append([]string{"PATH=" + fakebin + ":" + os.Getenv("PATH"), "FAKE_LOG=" + log}, env...)
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
			out, errOut, calls, err := runAsRoot(t, script, tc.stdin, tc.env...)
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
			_, errOut, calls, err := runAsRoot(t, tc.script, "", tc.env...)
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
