package bootstrap

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/jbcalling/platform/infra"
)

// Docker log rotation on every node: json-file keeps `docker service logs`
// working; 3 × 10 MB per container bounds the disk a chatty service can take.
const (
	LogMaxSize = "10m"
	LogMaxFile = 3
)

// MTU bounds GCP accepts for a VPC (compute.Network.mtu); the daemon, the
// docker_gwbridge, the ingress network and every overlay of the stack use the
// one value from config (Config.MTU).
const (
	MinMTU = 1300
	MaxMTU = 8896
)

// StartupParams are the per-node inputs of the startup script. Nothing in
// them is secret, and nothing depends on a resource output, so the script
// (and thus the VM metadata) only changes when these do.
type StartupParams struct {
	NodeName string     // logical node name (translation01)
	Role     infra.Role // manager or worker
	MTU      int        // VPC MTU (Config.MTU)
}

var nodeName = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (p StartupParams) validate() error {
	switch {
	case p.NodeName == "":
		return fmt.Errorf("bootstrap: startup script: empty node name")
	case !nodeName.MatchString(p.NodeName):
		return fmt.Errorf("bootstrap: startup script: node name %q is not a lowercase hostname (a-z, 0-9, -)", p.NodeName)
	case p.Role != infra.RoleManager && p.Role != infra.RoleWorker:
		return fmt.Errorf("bootstrap: startup script for %s: role %q is neither %q nor %q", p.NodeName, p.Role, infra.RoleManager, infra.RoleWorker)
	case p.MTU < MinMTU || p.MTU > MaxMTU:
		return fmt.Errorf("bootstrap: startup script for %s: MTU %d is outside %d-%d", p.NodeName, p.MTU, MinMTU, MaxMTU)
	}
	return nil
}

func (p StartupParams) params() []param {
	return []param{
		{"NODE_NAME", p.NodeName},
		{"ROLE", string(p.Role)},
		{"MTU", strconv.Itoa(p.MTU)},
		{"LOG_MAX_SIZE", LogMaxSize},
		{"LOG_MAX_FILE", strconv.Itoa(LogMaxFile)},
	}
}

// StartupVersion identifies the startup script rendered from p: the node
// writes it to /var/lib/platform/bootstrap.version when the script has run,
// and the engine-ready step waits for exactly this value.
func StartupVersion(p StartupParams) string {
	raw, _ := scriptFS.ReadFile("scripts/startup.sh")
	parts := []string{string(raw)}
	for _, x := range p.params() {
		parts = append(parts, x.name+"="+x.value)
	}
	return version(parts...)
}

// StartupScript renders the GCE startup script (metadata "startup-script")
// for one node: it installs Docker Engine from Debian, writes
// /etc/docker/daemon.json (log rotation, MTU), creates docker_gwbridge with the
// VPC MTU and records its version. It is idempotent and runs at every boot.
func StartupScript(p StartupParams) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	return render("startup.sh", append(p.params(), param{"SCRIPT_VERSION", StartupVersion(p)})...)
}

// startupParams derives a node's startup parameters from the config.
func startupParams(cfg *infra.Config, n infra.Node) StartupParams {
	return StartupParams{NodeName: n.Name, Role: n.Role, MTU: cfg.MTU}
}

// StartupScripts renders the startup script of every node of cfg, keyed by
// logical node name (what infra.ClusterArgs.StartupScripts takes).
func StartupScripts(cfg *infra.Config) (map[string]string, error) {
	if cfg == nil {
		return nil, fmt.Errorf("bootstrap: nil config")
	}
	out := make(map[string]string, len(cfg.Nodes))
	for _, n := range cfg.Nodes {
		s, err := StartupScript(startupParams(cfg, n))
		if err != nil {
			return nil, err
		}
		out[n.Name] = s
	}
	return out, nil
}
