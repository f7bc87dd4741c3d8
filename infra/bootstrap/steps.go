package bootstrap

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jbcalling/platform/infra"
)

// DockerAPIPort is where the manager's Docker API listens, with mutual TLS
// only (the IANA port for Docker over TLS). infra's firewall admits it from
// the admin ranges alone.
const DockerAPIPort = 2376

// Overlay subnets come from this pool (swarm init --default-addr-pool): one
// /24 per overlay network, well clear of Docker's local bridge pools
// (172.17.0.0/16-172.31.0.0/16, 192.168.0.0/16) and checked against the VPC
// subnet, because an overlay overlapping the subnet makes node addresses
// unreachable from containers.
const (
	OverlayPool     = "10.200.0.0/16"
	OverlayPoolMask = 24
)

// engineReadyScript waits until the node has applied startup script version v.
func engineReadyScript(v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("bootstrap: engine-ready: empty startup script version")
	}
	return render("engine-ready.sh", param{"SCRIPT_VERSION", v})
}

// dockerTLSScript installs the Docker API's server TLS files (read from
// stdin) and has the API listen on bind, the manager's own internal
// address (the firewall's NAT delivers its external address there), and
// loopback: not on every interface, Docker's bridges and overlays
// included, where any container of the node could reach it.
func dockerTLSScript(bind string) (string, error) {
	if ip, err := netip.ParseAddr(bind); err != nil || !ip.Is4() || ip.IsUnspecified() {
		return "", fmt.Errorf("bootstrap: docker API: bind address %q is not a node's IPv4 address", bind)
	}
	return render("docker-tls.sh", param{"DOCKER_API_PORT", strconv.Itoa(DockerAPIPort)}, param{"BIND_ADDR", bind})
}

// initParams are the inputs of `swarm init` on the manager.
type initParams struct {
	AdvertiseAddr string // the manager's VPC-internal IP
	MTU           int
	Subnet        string // VPC subnet CIDR, must not overlap OverlayPool
}

func (p initParams) script() (string, error) {
	if _, err := netip.ParseAddr(p.AdvertiseAddr); err != nil {
		return "", fmt.Errorf("bootstrap: swarm init: advertise address %q is not an IP address", p.AdvertiseAddr)
	}
	if p.MTU < MinMTU || p.MTU > MaxMTU {
		return "", fmt.Errorf("bootstrap: swarm init: MTU %d is outside %d-%d", p.MTU, MinMTU, MaxMTU)
	}
	if err := checkOverlayPool(p.Subnet); err != nil {
		return "", err
	}
	return render("swarm-init.sh",
		param{"ADVERTISE_ADDR", p.AdvertiseAddr},
		param{"MTU", strconv.Itoa(p.MTU)},
		param{"ADDR_POOL", OverlayPool},
		param{"ADDR_POOL_MASK", strconv.Itoa(OverlayPoolMask)},
	)
}

// checkOverlayPool fails when the VPC subnet overlaps the overlay pool.
func checkOverlayPool(subnet string) error {
	s, err := netip.ParsePrefix(subnet)
	if err != nil {
		return fmt.Errorf("bootstrap: VPC subnet %q is not a CIDR", subnet)
	}
	pool := netip.MustParsePrefix(OverlayPool)
	if s.Overlaps(pool) {
		return fmt.Errorf("bootstrap: platform:subnetCidr %s overlaps the Swarm overlay pool %s; pick a subnet outside it", subnet, OverlayPool)
	}
	return nil
}

// parseInit reads what swarm-init.sh prints: "<cluster id> <node id>".
func parseInit(stdout string) (clusterID, nodeID string, err error) {
	f := strings.Fields(lastLine(stdout))
	if len(f) != 2 || !swarmID.MatchString(f[0]) || !swarmID.MatchString(f[1]) {
		return "", "", fmt.Errorf("bootstrap: swarm init printed %q, want \"<cluster id> <node id>\"", stdout)
	}
	return f[0], f[1], nil
}

// parseNodeID reads the node ID a join prints.
func parseNodeID(stdout string) (string, error) {
	id := strings.TrimSpace(lastLine(stdout))
	if !swarmID.MatchString(id) {
		return "", fmt.Errorf("bootstrap: swarm join printed %q, want the node ID", stdout)
	}
	return id, nil
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Swarm object IDs are 25 lowercase alphanumerics; accept any plain token so a
// future format does not break the program, but nothing a shell would mind.
var swarmID = regexp.MustCompile(`^[a-z0-9]{10,64}$`)

// joinParams are the inputs of `swarm join` on a worker; the token is stdin.
type joinParams struct {
	ManagerAddr   string // manager's VPC-internal IP (join target, port 2377)
	ManagerNodeID string // identifies the swarm the worker must be in
}

func (p joinParams) script() (string, error) {
	if _, err := netip.ParseAddr(p.ManagerAddr); err != nil {
		return "", fmt.Errorf("bootstrap: swarm join: manager address %q is not an IP address", p.ManagerAddr)
	}
	if !swarmID.MatchString(p.ManagerNodeID) {
		return "", fmt.Errorf("bootstrap: swarm join: manager node ID %q is not a swarm ID", p.ManagerNodeID)
	}
	return render("swarm-join.sh",
		param{"MANAGER_ADDR", p.ManagerAddr},
		param{"MANAGER_NODE_ID", p.ManagerNodeID},
	)
}

// tokenCommand prints the worker join token (its output is a secret).
const tokenCommand = "sudo -n docker swarm join-token -q worker"

// Label is one Swarm node label ("instance=translation02").
type Label struct{ Key, Value string }

// Docker accepts any label key, but placement constraints
// (node.labels.<key> == <value>) and Pulumi resource names want a plain one.
var labelKey = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// NodeLabels are the Swarm labels the bootstrap maintains on node n
// (infra.Config.SwarmLabels: the configured ones plus instance/edge/media),
// sorted by key, with an error naming the node and label for a key or value
// the bootstrap cannot carry.
func NodeLabels(cfg *infra.Config, n infra.Node) ([]Label, error) {
	m := cfg.SwarmLabels(n)
	out := make([]Label, 0, len(m))
	for k, v := range m {
		if !labelKey.MatchString(k) {
			return nil, fmt.Errorf("bootstrap: node %s: label key %q must be letters, digits, '.', '_' or '-'", n.Name, k)
		}
		if strings.ContainsAny(v, "\x00\n\r") {
			return nil, fmt.Errorf("bootstrap: node %s: label %s has a line break in its value", n.Name, k)
		}
		out = append(out, Label{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// labelScript sets (add) or removes (remove) one label on one node.
func labelScript(action, nodeID string, l Label) (string, error) {
	if action != "add" && action != "remove" {
		return "", fmt.Errorf("bootstrap: label action %q", action)
	}
	if !swarmID.MatchString(nodeID) {
		return "", fmt.Errorf("bootstrap: label %s: node ID %q is not a swarm ID", l.Key, nodeID)
	}
	return render("node-label.sh",
		param{"ACTION", action},
		param{"NODE_ID", nodeID},
		param{"KEY", l.Key},
		param{"VALUE", l.Value},
	)
}

// memberScript keeps (prunes stale duplicates of) or removes one worker.
func memberScript(action, nodeID, hostname string) (string, error) {
	if action != "keep" && action != "remove" {
		return "", fmt.Errorf("bootstrap: member action %q", action)
	}
	if !swarmID.MatchString(nodeID) {
		return "", fmt.Errorf("bootstrap: member %s: node ID %q is not a swarm ID", hostname, nodeID)
	}
	return render("swarm-member.sh",
		param{"ACTION", action},
		param{"NODE_ID", nodeID},
		param{"HOSTNAME_WANT", hostname},
	)
}
