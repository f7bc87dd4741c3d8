// Package stacks declares the Swarm service stack as typed Go: one catalog of
// services (Catalog), a validator that rejects the mistakes that broke the old
// cluster (Validate), a human-readable view (Render) and the pulumi-docker
// resources that deploy it (NewStack). The model is plain data so that the
// validator, the view and the deployment all read the same declaration.
package stacks

// Stack is the whole service stack of one Pulumi stack.
type Stack struct {
	// Prefix is prepended to every docker object name ("translation" gives
	// translation_frontend), as `docker stack deploy` named them when the
	// stack was run by hand: volumes and dashboards keep their names.
	Prefix   string
	Networks []Network
	Services []Service
	Secrets  []Secret
}

// Network is one overlay network.
type Network struct {
	Name       string // logical name; the docker name is Stack.FullName(Name)
	Attachable bool
	Internal   bool
	// MTU is the overlay's `com.docker.network.driver.mtu` option: the
	// underlay MTU docker subtracts the VXLAN header from. 0 means docker's
	// default base of 1500, which is larger than a GCP VPC's 1460.
	MTU int
	// VXLANID is the overlay's VXLAN network identifier
	// (com.docker.network.driver.overlay.vxlanid_list). Declared, because
	// the daemon adds the one it picks to the network's options, which
	// reads back as a change that replaces the network on every `up`.
	VXLANID int
}

// FirstVXLANID is the first of the VXLAN IDs the stack's overlays take,
// one each in declaration order: above the ones Swarm picks for overlays
// created without one (4096 for ingress, then 4097 upward).
const FirstVXLANID = 4300

// SecretKind says where a secret's value comes from at deploy time.
type SecretKind string

const (
	SecretRandom        SecretKind = "random"         // generated random string
	SecretHtpasswd      SecretKind = "htpasswd"       // "admin:<bcrypt>" of a generated password
	SecretTLSKey        SecretKind = "tls-key"        // generated private key (PEM)
	SecretOriginCert    SecretKind = "origin-cert"    // Cloudflare Origin CA certificate for that key
	SecretACMEDNSToken  SecretKind = "acme-dns-token" // Cloudflare API token from stack config
	SecretGrafanaPasswd SecretKind = "grafana-admin"  // generated Grafana admin password
)

// Secret is one docker secret; its value is always a Pulumi secret.
type Secret struct {
	Name string // logical name
	Kind SecretKind
	// Hosts are the certificate's hostnames (SecretOriginCert only).
	Hosts []string
}

// Service is one Swarm service.
type Service struct {
	Name  string // logical name; the docker name is Stack.FullName(Name)
	Image string
	// Global runs one task per eligible node; otherwise Replicas tasks.
	Global   bool
	Replicas int

	// Constraints are swarm placement constraints ("node.labels.instance == x").
	Constraints []string
	// Preferences are spread preferences ("node.labels.zone").
	Preferences []string

	Networks []string // logical network names
	// HostNetwork attaches the task to the node's network namespace only;
	// Traefik cannot reach such a service.
	HostNetwork bool

	// Routes are the Traefik routes this service serves; ServiceLabels holds
	// the labels generated from them (TraefikLabels).
	Routes      []Route
	Middlewares []Middleware
	Ports       []Port

	Args     []string
	Commands []string
	// UID is the numeric user the service's processes run as (the
	// image's USER; "" is root): its secrets are mounted 0400 for it.
	UID string
	Env map[string]string
	// ExternalIPEnv maps an environment variable to the logical node whose
	// external IP (an infra output) it carries, e.g. the SFU's announced IP.
	ExternalIPEnv map[string]string
	Secrets       []SecretRef
	Configs       []ConfigFile
	Mounts        []Mount

	Resources   Resources
	Update      UpdatePolicy
	Rollback    UpdatePolicy
	Healthcheck *Healthcheck // nil: the image's own HEALTHCHECK applies
	Restart     RestartPolicy
	StopGrace   string

	ServiceLabels   map[string]string // read by Traefik's Swarm provider
	ContainerLabels map[string]string // NOT read by Traefik in Swarm

	// DNSNames are the FQDNs that must resolve to the single node this
	// service is pinned to (the SFU's signalling and ICE names).
	DNSNames []string
	// Build marks the image as built by the program (the SFU); Image is then
	// only the default/placeholder shown in the view.
	Build bool
	// DNSRR resolves the service's name to its tasks' addresses instead of
	// a virtual IP (IPVS): for internal services without published ports.
	DNSRR bool
}

// Route is one Traefik HTTP route to a service.
type Route struct {
	Name         string   // router name, unique in the stack
	Hosts        []string // FQDNs, ORed
	PathPrefixes []string // ORed; empty means the whole host
	Port         int      // container port Traefik forwards to
	EntryPoint   string   // websecure
	Middlewares  []string // middleware names (defined on any service)
	TLS          bool
	Priority     int
	// Internal routes to a Traefik internal service (api@internal) instead
	// of the service's own port.
	Internal string
}

// Middleware is a Traefik middleware defined by this service's labels.
type Middleware struct {
	Name string
	// StripPrefixes, when set, makes a stripprefix middleware.
	StripPrefixes []string
	// BasicAuthUsersFile, when set, makes a basicauth middleware reading an
	// htpasswd file (a docker secret).
	BasicAuthUsersFile string
}

// PublishMode is where a published port listens.
type PublishMode string

const (
	// ModeHost binds the port on the node running the task only, keeping
	// client addresses: required for media and for Traefik's 80/443.
	ModeHost PublishMode = "host"
	// ModeIngress publishes through the routing mesh on every node.
	ModeIngress PublishMode = "ingress"
)

// Port is one published port (Docker has no ranges: one entry per port).
type Port struct {
	Name      string
	Target    int
	Published int
	Protocol  string // tcp or udp
	Mode      PublishMode
	// Media marks an ICE/TURN port that must lie in the firewall's media range.
	Media bool
	// Proxied marks a port only Cloudflare's proxies reach (the proxied
	// hostnames' web and signalling); the others are open to everyone.
	Proxied bool
}

// SecretRef mounts a stack secret into the service's containers.
type SecretRef struct {
	Secret string // logical secret name
	File   string // file name under /run/secrets
}

// ConfigFile is a non-secret file delivered as a docker config.
type ConfigFile struct {
	Name    string
	Target  string // absolute path in the container
	Content string
}

// Mount is a volume, bind or tmpfs mount. A tmpfs has docker's defaults:
// mode 1777, its size bounded by the task's memory limit. (The provider
// cannot set tmpfs options: it panics converting their size, and reads
// their mode back wrong.)
type Mount struct {
	Type     string // volume, bind or tmpfs
	Source   string // none for tmpfs
	Target   string
	ReadOnly bool
}

// Resources are per-task limits and reservations.
type Resources struct {
	LimitMemoryMB   int
	LimitCPUs       float64
	ReserveMemoryMB int
	ReserveCPUs     float64
}

// Update orders.
const (
	StartFirst = "start-first"
	StopFirst  = "stop-first"
)

// UpdatePolicy is a service's update or rollback config.
type UpdatePolicy struct {
	Order         string // start-first or stop-first
	Parallelism   int
	Delay         string
	FailureAction string // rollback, pause, continue
	Monitor       string
}

// Healthcheck is the container health check.
type Healthcheck struct {
	Test        []string
	Interval    string
	Timeout     string
	Retries     int
	StartPeriod string
}

// RestartPolicy is the task restart policy.
type RestartPolicy struct {
	Condition   string // on-failure, any, none
	Delay       string
	MaxAttempts int
	Window      string
}

// DockerSocket is the engine's socket: root on the node to whoever can
// write to it.
const DockerSocket = "/var/run/docker.sock"

// FullName is the docker name of a logical service, network or volume.
func (st *Stack) FullName(name string) string {
	if st.Prefix == "" {
		return name
	}
	return st.Prefix + "_" + name
}

// Service returns the named service or nil.
func (st *Stack) Service(name string) *Service {
	for i := range st.Services {
		if st.Services[i].Name == name {
			return &st.Services[i]
		}
	}
	return nil
}

// Network returns the named network or nil.
func (st *Stack) Network(name string) *Network {
	for i := range st.Networks {
		if st.Networks[i].Name == name {
			return &st.Networks[i]
		}
	}
	return nil
}

// Secret returns the named secret or nil.
func (st *Stack) Secret(name string) *Secret {
	for i := range st.Secrets {
		if st.Secrets[i].Name == name {
			return &st.Secrets[i]
		}
	}
	return nil
}

// HostPorts are the service's host-mode published ports.
func (s *Service) HostPorts() []Port {
	var out []Port
	for _, p := range s.Ports {
		if p.Mode == ModeHost {
			out = append(out, p)
		}
	}
	return out
}
