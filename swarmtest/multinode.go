package swarmtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A multi-node swarm on one machine: one extra Docker engine per node, each
// in a network namespace of its own, joined by a bridge. Cross-node
// container traffic then really crosses VXLAN (4789/udp) between the
// namespaces, and a firewall rule inside one of them cuts it as a missing
// cloud firewall rule would.

const (
	mnBridge = "swtbr0"
	mnSubnet = "10.210.0" // node i has mnSubnet.i; the host side has .254
)

// MultiNode is a running multi-node swarm.
type MultiNode struct {
	Nodes []*MNode
}

// MNode is one node: its namespace, address and engine.
type MNode struct {
	Name   string // swt1, swt2, ...
	Addr   string // 10.210.0.i
	Socket string // the engine's Unix socket
	E      *Engine
	ID     string // swarm node ID
}

// Cluster returns a Cluster handle on node 0, the manager.
func (mn *MultiNode) Cluster() *Cluster {
	return &Cluster{E: mn.Nodes[0].E, NodeID: mn.Nodes[0].ID}
}

// StartMultiNode starts n engines in namespaces, makes node 0 a swarm
// manager and joins the others as workers, and loads images (by reference
// on the main engine) into each. Everything is removed at cleanup. It skips
// t when the machine cannot do this (not root, no dockerd/ip/nsenter/iptables).
func StartMultiNode(t *testing.T, n int, images ...string) *MultiNode {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a multi-node swarm needs root (network namespaces, extra Docker engines)")
	}
	for _, tool := range []string{"dockerd", "ip", "nsenter", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("a multi-node swarm needs %s: %v", tool, err)
		}
	}
	run := func(args ...string) { t.Helper(); mustRun(t, args...) }
	undo := func(args ...string) { undoAtCleanup(t, args...) }
	run("ip", "link", "add", mnBridge, "type", "bridge")
	undo("ip", "link", "del", mnBridge)
	run("ip", "addr", "add", mnSubnet+".254/24", "dev", mnBridge)
	run("ip", "link", "set", mnBridge, "up")
	// Docker's FORWARD policy is DROP and bridged frames pass iptables here:
	// let the nodes' bridge forward among its own ports only.
	run("iptables", "-I", "FORWARD", "-i", mnBridge, "-o", mnBridge, "-j", "ACCEPT")
	undo("iptables", "-D", "FORWARD", "-i", mnBridge, "-o", mnBridge, "-j", "ACCEPT")

	cfgFile := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(cfgFile, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	mn := &MultiNode{}
	for i := 1; i <= n; i++ {
		mn.Nodes = append(mn.Nodes, startNode(t, i, cfgFile))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, nd := range mn.Nodes {
		for {
			if _, err := nd.E.Info(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("dockerd for %s never answered", nd.Name)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err := transferImages(ctx, NewEngine(), nd.E, images); err != nil {
			t.Fatalf("loading images into %s: %v", nd.Name, err)
		}
	}
	formSwarm(ctx, t, mn)
	return mn
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
}

func undoAtCleanup(t *testing.T, args ...string) {
	t.Cleanup(func() { _ = exec.Command(args[0], args[1:]...).Run() })
}

// startNode starts node i's engine in a namespace of its own on the
// nodes' bridge; everything is removed at cleanup.
func startNode(t *testing.T, i int, cfgFile string) *MNode {
	t.Helper()
	nd := &MNode{Name: fmt.Sprintf("swt%d", i), Addr: fmt.Sprintf("%s.%d", mnSubnet, i)}
	veth := fmt.Sprintf("swtv%d", i)
	mustRun(t, "ip", "netns", "add", nd.Name)
	undoAtCleanup(t, "ip", "netns", "del", nd.Name)
	mustRun(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", nd.Name)
	undoAtCleanup(t, "ip", "link", "del", veth)
	mustRun(t, "ip", "link", "set", veth, "master", mnBridge, "up")
	mustRun(t, "ip", "-n", nd.Name, "addr", "add", nd.Addr+"/24", "dev", "eth0")
	mustRun(t, "ip", "-n", nd.Name, "link", "set", "eth0", "up")
	mustRun(t, "ip", "-n", nd.Name, "link", "set", "lo", "up")

	data := fmt.Sprintf("/var/lib/platform-swarmtest-%s", nd.Name)
	execRoot := fmt.Sprintf("/run/platform-swarmtest-%s", nd.Name)
	nd.Socket = execRoot + ".sock"
	t.Cleanup(func() { os.RemoveAll(data); os.RemoveAll(execRoot); os.Remove(nd.Socket) })
	logf, err := os.Create(filepath.Join(t.TempDir(), nd.Name+"-dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	// nsenter --net only: `ip netns exec` would also remount /sys and
	// hide the cgroup mounts dockerd needs.
	cmd := exec.Command("nsenter", "--net=/run/netns/"+nd.Name, "dockerd",
		"--data-root", data, "--exec-root", execRoot, "--pidfile", execRoot+".pid",
		"-H", "unix://"+nd.Socket, "--storage-driver", "vfs", "--cgroup-parent", "platform-swarmtest-"+nd.Name,
		"--bip", fmt.Sprintf("172.31.%d.1/24", i), "--config-file", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dockerd for %s: %v", nd.Name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		removeCgroups("platform-swarmtest-" + nd.Name)
	})
	nd.E = NewEngineAt(nd.Socket)
	return nd
}

// formSwarm makes node 0 the manager and joins the others as workers.
func formSwarm(ctx context.Context, t *testing.T, mn *MultiNode) {
	t.Helper()
	mgr := mn.Nodes[0]
	if err := mgr.E.SwarmInit(ctx, mgr.Addr); err != nil {
		t.Fatalf("swarm init on %s: %v", mgr.Name, err)
	}
	var sw struct{ JoinTokens struct{ Worker string } }
	if err := mgr.E.Do(ctx, http.MethodGet, "/swarm", nil, nil, &sw); err != nil {
		t.Fatal(err)
	}
	for _, nd := range mn.Nodes[1:] {
		if err := nd.E.Do(ctx, http.MethodPost, "/swarm/join", nil, map[string]any{
			"ListenAddr": nd.Addr + ":2377", "AdvertiseAddr": nd.Addr,
			"RemoteAddrs": []string{mgr.Addr + ":2377"}, "JoinToken": sw.JoinTokens.Worker,
		}, nil); err != nil {
			t.Fatalf("%s joining the swarm: %v", nd.Name, err)
		}
	}
	for _, nd := range mn.Nodes {
		info, err := nd.E.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nd.ID = info.Swarm.NodeID
	}
}

// transferImages copies images from one engine to another (save, load).
func transferImages(ctx context.Context, from, to *Engine, refs []string) error {
	if len(refs) == 0 {
		return nil
	}
	q := url.Values{"names": refs}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/"+APIVersion+"/images/get?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := from.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("saving %v: %s", refs, b)
	}
	lreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker/"+APIVersion+"/images/load?quiet=1", resp.Body)
	if err != nil {
		return err
	}
	lreq.Header.Set("Content-Type", "application/x-tar")
	lresp, err := to.hc.Do(lreq)
	if err != nil {
		return err
	}
	defer lresp.Body.Close()
	b, _ := io.ReadAll(lresp.Body)
	if lresp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("loading %v: %d %s", refs, lresp.StatusCode, b)
	}
	return nil
}

// InNode runs a command in a node's network namespace.
func (nd *MNode) InNode(args ...string) error {
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + nd.Name}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %v: %s", nd.Name, args, err, out)
	}
	return nil
}

// removeCgroups removes the (empty, once dockerd is gone) cgroups that
// --cgroup-parent made under every cgroup v1 controller, deepest first.
func removeCgroups(parent string) {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}
