package stacks

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/infra/bootstrap"
	"github.com/jbcalling/platform/sfu/auth"
)

// Logical network names.
const (
	NetEdge       = "edge"       // Traefik and everything it routes to
	NetBackend    = "backend"    // app services, redis, the speech pipeline
	NetMonitoring = "monitoring" // Prometheus and Grafana
	NetDockerAPI  = "docker_api" // Traefik and the read-only Docker API proxy only
)

// Container ports of the services (what the images listen on).
const (
	portFrontend    = 80
	portAPI         = 8000
	portSignaling   = 3001
	portGrafana     = 3000
	portPrometheus  = 9090
	portSFUHTTP     = 8080
	portAgentHealth = 8090
	portSFUMetrics  = 9090
	// The read-only Docker API proxy's service name and port.
	socketProxyHost = "socket_proxy"
	portSocketProxy = 2375
	// The claims of the SFU's join tokens, which the api mints.
	sfuJWTIssuer   = auth.DefaultIssuer
	sfuJWTAudience = auth.Audience
	portRedis      = 6379
	sfuPathPrefix  = "/sfu"
)

// SFUPortNames name the SFU's published ports (tests and the view use them).
const (
	PortSFUTLS    = "signalling-tls"
	PortSFUICEUDP = "ice-udp"
	PortSFUICETCP = "ice-tcp"
)

// Catalog declares every service of the stack for one cluster config.
// It only builds the model; Validate checks it.
func Catalog(top infra.Topology, cfg *Config) (*Stack, error) {
	if top.Config == nil || cfg == nil || cfg.Cluster == nil {
		return nil, fmt.Errorf("stacks: Catalog needs the topology and stack config")
	}
	cl := top.Config
	if _, ok := cl.Node(cl.EdgeNode); !ok {
		return nil, fmt.Errorf("stacks: edge node %q is not a declared node", cl.EdgeNode)
	}
	if _, ok := cl.Node(cl.MediaNode); !ok {
		return nil, fmt.Errorf("stacks: media node %q is not a declared node", cl.MediaNode)
	}
	st := &Stack{Prefix: cfg.Prefix}
	for _, n := range []string{NetEdge, NetBackend, NetMonitoring} {
		// Attachable so that one-off debug containers (`docker run --network`)
		// can join; MTU from the one cluster value the VPC also uses.
		st.Networks = append(st.Networks, Network{Name: n, Attachable: true, MTU: cl.MTU})
	}
	// Internal and not attachable: nothing but Traefik reaches the proxy.
	st.Networks = append(st.Networks, Network{Name: NetDockerAPI, Internal: true, MTU: cl.MTU})
	for i := range st.Networks {
		st.Networks[i].VXLANID = FirstVXLANID + i
	}
	apex, www := cl.Hostname(""), cl.Hostname("www")
	apiHost, grafanaHost := cl.Hostname("api"), cl.Hostname("grafana")
	webrtcHost, mediaHost := cl.Hostname("webrtc"), cl.Hostname("media")
	onEdge := "node.labels.instance == " + cl.EdgeNode
	onMedia := "node.labels.instance == " + cl.MediaNode
	onManager := "node.role == manager"
	stateless := UpdatePolicy{Order: StartFirst, Parallelism: 1, Delay: "10s", FailureAction: "rollback", Monitor: "30s"}
	// Host-port and single-volume services cannot start a second task on the
	// same node before stopping the first: stop-first.
	singleton := UpdatePolicy{Order: StopFirst, Parallelism: 1, Delay: "5s", FailureAction: "rollback", Monitor: "30s"}
	// A failed rollback pauses (docker accepts only pause or continue there).
	statelessBack, singletonBack := stateless, singleton
	statelessBack.FailureAction, singletonBack.FailureAction = "pause", "pause"
	restart := RestartPolicy{Condition: "any", Delay: "5s", MaxAttempts: 0, Window: "60s"}
	replicas := func(name string, def int) int {
		if n, ok := cfg.Replicas[name]; ok {
			return n
		}
		return def
	}
	img := func(name string) string { return cfg.Images[name] }
	// Images the program builds from this repository unless the config
	// names prebuilt ones.
	own := func(name string) (string, bool) {
		if p := cfg.Prebuilt[name]; p != "" {
			return p, false
		}
		return img(name), true
	}
	edgeNet := st.FullName(NetEdge)

	st.Secrets = []Secret{
		{Name: "jwt_secret", Kind: SecretRandom},
		// The SFU's own join-token key: the api signs join tokens with it
		// (aud "sfu"), its own sessions with jwt_secret, so that no api
		// session token is ever a valid join token.
		{Name: "sfu_jwt_secret", Kind: SecretRandom},
		{Name: "turn_secret", Kind: SecretRandom},
		{Name: "redis_password", Kind: SecretRandom},
		{Name: "traefik_dashboard_users", Kind: SecretHtpasswd},
		{Name: "acme_dns_token", Kind: SecretACMEDNSToken},
		{Name: "grafana_admin_password", Kind: SecretGrafanaPasswd},
		{Name: "sfu_tls_key", Kind: SecretTLSKey},
		{Name: "sfu_tls_cert", Kind: SecretOriginCert, Hosts: []string{webrtcHost}},
	}

	traefik := Service{
		Name: "traefik", Image: img("traefik"), Replicas: 1,
		// acme.json lives in a volume on the edge node and cannot be shared
		// between replicas: one replica, pinned.
		Constraints: []string{onEdge},
		Networks:    []string{NetEdge, NetDockerAPI},
		Args: []string{
			// Swarm's state through the read-only proxy: Traefik faces the
			// Internet, and the engine's socket is root on the manager.
			"--providers.swarm.endpoint=tcp://" + socketProxyHost + ":" + strconv.Itoa(portSocketProxy),
			"--providers.swarm.exposedByDefault=false",
			"--providers.swarm.network=" + edgeNet,
			"--entrypoints.web.address=:80",
			"--entrypoints.web.http.redirections.entrypoint.to=websecure",
			"--entrypoints.web.http.redirections.entrypoint.scheme=https",
			"--entrypoints.websecure.address=:443",
			// DNS-01 works behind the Cloudflare proxy (HTTP-01 and
			// TLS-ALPN-01 would hit Cloudflare, not Traefik).
			"--certificatesresolvers." + CertResolver + ".acme.email=" + cfg.ACMEEmail,
			"--certificatesresolvers." + CertResolver + ".acme.storage=/acme/acme.json",
			"--certificatesresolvers." + CertResolver + ".acme.dnschallenge.provider=cloudflare",
			"--certificatesresolvers." + CertResolver + ".acme.dnschallenge.resolvers=1.1.1.1:53,1.0.0.1:53",
			// Internal entrypoint for ping (the health check) and metrics
			// (Prometheus); never published.
			"--entrypoints.traefik.address=:8080",
			"--api.dashboard=true",
			"--ping=true",
			"--metrics.prometheus=true",
			"--accesslog=true",
			"--log.level=INFO",
		},
		// lego reads <VAR>_FILE: the token stays a docker secret.
		Env:     map[string]string{"CF_DNS_API_TOKEN_FILE": "/run/secrets/acme_dns_token"},
		Secrets: []SecretRef{{"acme_dns_token", "acme_dns_token"}, {"traefik_dashboard_users", "dashboard_users"}},
		Mounts: []Mount{
			{Type: "volume", Source: st.FullName("traefik_acme"), Target: "/acme"},
		},
		Ports: []Port{
			{Name: "http", Target: 80, Published: 80, Protocol: "tcp", Mode: ModeHost, Proxied: true},
			{Name: "https", Target: 443, Published: 443, Protocol: "tcp", Mode: ModeHost, Proxied: true},
		},
		// The dashboard shares the apex host: /dashboard and /api are
		// Traefik's own paths, the frontend serves neither.
		Routes: []Route{{
			Name: "dashboard", Hosts: []string{apex}, PathPrefixes: []string{"/dashboard", "/api"},
			EntryPoint: "websecure", TLS: true, Internal: "api@internal", Priority: 100,
			Middlewares: []string{"dashboard-auth"},
		}},
		Middlewares: []Middleware{{Name: "dashboard-auth", BasicAuthUsersFile: "/run/secrets/dashboard_users"}},
		Resources:   Resources{LimitMemoryMB: 256, LimitCPUs: 1, ReserveMemoryMB: 64, ReserveCPUs: 0.1},
		Update:      singleton, Rollback: singletonBack,
		Healthcheck: &Healthcheck{Test: []string{"CMD", "traefik", "healthcheck", "--ping"}, Interval: "10s", Timeout: "5s", Retries: 3, StartPeriod: "10s"},
		Restart:     restart,
	}

	// The Docker API, read-only, for Traefik's Swarm provider: the
	// sections the provider reads (version, services, tasks, networks,
	// nodes, events), GET only. It must run where the swarm's API is: a
	// manager.
	socketProxy := Service{
		Name: socketProxyHost, Image: img("socket_proxy"), Replicas: 1,
		Constraints: []string{onManager},
		Networks:    []string{NetDockerAPI},
		Env: map[string]string{
			"SERVICES": "1", "TASKS": "1", "NETWORKS": "1", "NODES": "1",
			"VERSION": "1", "PING": "1", "EVENTS": "1", "INFO": "1",
			"POST": "0", "CONTAINERS": "0", "IMAGES": "0", "EXEC": "0", "SECRETS": "0", "CONFIGS": "0", "VOLUMES": "0",
		},
		Mounts: []Mount{{Type: "bind", Source: DockerSocket, Target: DockerSocket, ReadOnly: true}},
		// Traefik dials the task itself: one less layer (IPVS) between
		// them, on an internal network where nothing else listens.
		DNSRR:     true,
		Resources: Resources{LimitMemoryMB: 64, LimitCPUs: 0.25, ReserveMemoryMB: 16, ReserveCPUs: 0.02},
		Update:    stateless, Rollback: statelessBack, Restart: restart,
	}

	web := func(name string, port int, routes []Route, nets []string, res Resources, def int) Service {
		return Service{
			Name: name, Image: img(name), Replicas: replicas(name, def),
			Networks: nets, Routes: routes, Resources: res,
			Update: stateless, Rollback: statelessBack, Restart: restart,
		}
	}
	frontend := web("frontend", portFrontend, []Route{{
		Name: "frontend", Hosts: []string{apex, www}, Port: portFrontend, EntryPoint: "websecure", TLS: true,
	}}, []string{NetEdge}, Resources{LimitMemoryMB: 128, LimitCPUs: 0.5, ReserveMemoryMB: 64, ReserveCPUs: 0.05}, 3)

	api := web("api", portAPI, []Route{{
		Name: "api", Hosts: []string{apiHost}, Port: portAPI, EntryPoint: "websecure", TLS: true,
	}}, []string{NetEdge, NetBackend}, Resources{LimitMemoryMB: 512, LimitCPUs: 1, ReserveMemoryMB: 256, ReserveCPUs: 0.25}, 3)
	api.Env = map[string]string{
		"JWT_SECRET_FILE":     "/run/secrets/jwt_secret",
		"REDIS_URL":           "redis://redis:" + strconv.Itoa(portRedis),
		"SFU_URL":             "wss://" + webrtcHost + ":" + strconv.Itoa(cl.SignallingPort),
		"SFU_JWT_SECRET_FILE": "/run/secrets/sfu_jwt_secret",
		"SFU_JWT_ISSUER":      sfuJWTIssuer,
		"SFU_JWT_AUDIENCE":    sfuJWTAudience,
	}
	api.Env["REDIS_PASSWORD_FILE"] = "/run/secrets/redis_password"
	api.Secrets = []SecretRef{{"jwt_secret", "jwt_secret"}, {"sfu_jwt_secret", "sfu_jwt_secret"}, {"redis_password", "redis_password"}}

	signaling := web("signaling", portSignaling, []Route{{
		Name: "signaling", Hosts: []string{apiHost}, PathPrefixes: []string{"/socket.io"},
		Port: portSignaling, EntryPoint: "websecure", TLS: true, Priority: 50,
	}}, []string{NetEdge, NetBackend}, Resources{LimitMemoryMB: 512, LimitCPUs: 1, ReserveMemoryMB: 256, ReserveCPUs: 0.25}, 3)
	signaling.Env = map[string]string{"REDIS_URL": "redis://redis:" + strconv.Itoa(portRedis), "REDIS_PASSWORD_FILE": "/run/secrets/redis_password"}
	signaling.Secrets = []SecretRef{{"redis_password", "redis_password"}}

	worker := func(name string, def int, res Resources) Service {
		s := web(name, 0, nil, []string{NetBackend}, res, def)
		s.Env = map[string]string{"REDIS_URL": "redis://redis:" + strconv.Itoa(portRedis), "REDIS_PASSWORD_FILE": "/run/secrets/redis_password"}
		s.Secrets = []SecretRef{{"redis_password", "redis_password"}}
		return s
	}
	stt := worker("stt", 3, Resources{LimitMemoryMB: 2048, LimitCPUs: 2, ReserveMemoryMB: 1024, ReserveCPUs: 0.5})
	translation := worker("translation", 3, Resources{LimitMemoryMB: 2048, LimitCPUs: 2, ReserveMemoryMB: 1024, ReserveCPUs: 0.5})
	tts := worker("tts", 4, Resources{LimitMemoryMB: 1024, LimitCPUs: 1, ReserveMemoryMB: 512, ReserveCPUs: 0.25})

	redis := func(name string) Service {
		return Service{
			Name: name, Image: img(name), Replicas: 1,
			// The data volume is node-local: keep the task on the manager.
			Constraints: []string{onManager},
			Networks:    []string{NetBackend},
			Commands:    []string{"sh", "-c", RedisStartScript("/run/secrets/redis_password")},
			Secrets:     []SecretRef{{"redis_password", "redis_password"}},
			Mounts: []Mount{
				{Type: "volume", Source: st.FullName(name + "_data"), Target: "/data"},
				{Type: "tmpfs", Target: RedisConfigDir},
			},
			Resources: Resources{LimitMemoryMB: 512, LimitCPUs: 0.5, ReserveMemoryMB: 128, ReserveCPUs: 0.1},
			Update:    singleton, Rollback: singletonBack, Restart: restart,
			Healthcheck: &Healthcheck{Test: RedisHealthcheck("/run/secrets/redis_password"), Interval: "10s", Timeout: "3s", Retries: 3, StartPeriod: "5s"},
		}
	}

	turnLo, turnHi := cfg.TURNRelayRange()
	coturn := Service{
		Name: "coturn", Image: img("coturn"), Replicas: 1,
		Constraints: []string{onMedia},
		// No overlay: TURN talks to clients and the SFU over the media
		// node's public address only.
		Commands: []string{"sh", "-c", TURNStartScript(TURNServerConfig(cl.Domain, cfg.TURNPort, turnLo, turnHi),
			"/run/secrets/turn_secret", "TURN_EXTERNAL_IP")},
		// The coturn image runs as nobody.
		UID:           "65534",
		ExternalIPEnv: map[string]string{"TURN_EXTERNAL_IP": cl.MediaNode},
		Secrets:       []SecretRef{{"turn_secret", "turn_secret"}},
		// Docker's tmpfs is sticky and world-writable like /tmp, so that
		// nobody can create its own 0400 file there.
		Mounts: []Mount{{Type: "tmpfs", Target: TURNConfigDir}},
		Ports: []Port{
			{Name: "turn-udp", Target: cfg.TURNPort, Published: cfg.TURNPort, Protocol: "udp", Mode: ModeHost, Media: true},
			{Name: "turn-tcp", Target: cfg.TURNPort, Published: cfg.TURNPort, Protocol: "tcp", Mode: ModeHost, Media: true},
		},
		Resources: Resources{LimitMemoryMB: 512, LimitCPUs: 1, ReserveMemoryMB: 128, ReserveCPUs: 0.1},
		Update:    singleton, Rollback: singletonBack, Restart: restart,
		DNSNames: []string{mediaHost},
	}
	for p := turnLo; p <= turnHi; p++ {
		coturn.Ports = append(coturn.Ports, Port{Name: "relay-" + strconv.Itoa(p), Target: p, Published: p, Protocol: "udp", Mode: ModeHost, Media: true})
	}

	sfuImage, sfuBuilt := own("sfu")
	sfu := Service{
		Name: "sfu", Image: sfuImage, Build: sfuBuilt, Replicas: 1,
		Constraints: []string{onMedia},
		UID:         "65532", // sfu/Dockerfile's USER
		// /metrics only on the monitoring network's listener.
		Networks: []string{NetEdge, NetMonitoring},
		Env: map[string]string{
			"SFU_LISTEN":       ":" + strconv.Itoa(portSFUHTTP),
			"SFU_TLS_LISTEN":   ":" + strconv.Itoa(cl.SignallingPort),
			"SFU_TLS_CERT":     "/run/secrets/sfu_tls_cert",
			"SFU_TLS_KEY":      "/run/secrets/sfu_tls_key",
			"SFU_ICE_UDP_PORT": strconv.Itoa(cfg.ICEUDPPort),
			"SFU_ICE_TCP_PORT": strconv.Itoa(cfg.ICETCPPort),
			// Host-mode published ports deliver to the task's docker_gwbridge
			// address, the default route's: ICE must answer from that socket.
			"SFU_ICE_BIND":        "auto",
			"SFU_JWT_SECRET_FILE": "/run/secrets/sfu_jwt_secret",
			"SFU_JWT_ISSUER":      sfuJWTIssuer,
			"SFU_METRICS_LISTEN":  ":" + strconv.Itoa(portSFUMetrics),
			// Cloudflare's proxies and Traefik (on the overlays) forward
			// clients: only their X-Forwarded-For names the client for the
			// per-address limits.
			"SFU_TRUSTED_PROXIES":  strings.Join(append(append(append([]string{}, infra.CloudflareIPv4...), infra.CloudflareIPv6...), bootstrap.OverlayPool), ","),
			"SFU_TURN_SECRET_FILE": "/run/secrets/turn_secret",
			"SFU_TURN_URL": fmt.Sprintf("turn:%s:%d?transport=udp,turn:%s:%d?transport=tcp",
				mediaHost, cfg.TURNPort, mediaHost, cfg.TURNPort),
			"SFU_ALLOW_ANONYMOUS": "false",
		},
		ExternalIPEnv: map[string]string{"SFU_PUBLIC_IP": cl.MediaNode},
		Secrets: []SecretRef{
			{"sfu_jwt_secret", "sfu_jwt_secret"}, {"turn_secret", "turn_secret"},
			{"sfu_tls_key", "sfu_tls_key"}, {"sfu_tls_cert", "sfu_tls_cert"},
		},
		// Media and the proxied TLS signalling port bypass the ingress mesh:
		// host mode keeps client addresses and pins the port to this node.
		Ports: []Port{
			{Name: PortSFUTLS, Target: cl.SignallingPort, Published: cl.SignallingPort, Protocol: "tcp", Mode: ModeHost, Proxied: true},
			{Name: PortSFUICEUDP, Target: cfg.ICEUDPPort, Published: cfg.ICEUDPPort, Protocol: "udp", Mode: ModeHost, Media: true},
			{Name: PortSFUICETCP, Target: cfg.ICETCPPort, Published: cfg.ICETCPPort, Protocol: "tcp", Mode: ModeHost, Media: true},
		},
		// Same-origin browser client: https://<apex>/sfu/ → sfu:8080/.
		Routes: []Route{{
			Name: "sfu", Hosts: []string{apex}, PathPrefixes: []string{sfuPathPrefix},
			Port: portSFUHTTP, EntryPoint: "websecure", TLS: true, Priority: 90,
			Middlewares: []string{"sfu-strip"},
		}},
		Middlewares: []Middleware{{Name: "sfu-strip", StripPrefixes: []string{sfuPathPrefix}}},
		Resources:   Resources{LimitMemoryMB: 1024, LimitCPUs: 2, ReserveMemoryMB: 512, ReserveCPUs: 0.5},
		// One SFU per node holding the host ports: stop-first, and give
		// calls time to drain on SIGTERM.
		Update: singleton, Rollback: singletonBack, Restart: restart,
		StopGrace:   "30s",
		Healthcheck: &Healthcheck{Test: []string{"CMD", "/sfu", "healthcheck", "http://127.0.0.1:" + strconv.Itoa(portSFUHTTP) + "/health"}, Interval: "10s", Timeout: "3s", Retries: 3, StartPeriod: "5s"},
		DNSNames:    []string{webrtcHost, mediaHost},
	}

	prometheus := Service{
		Name: "prometheus", Image: img("prometheus"), Replicas: 1,
		Constraints: []string{onManager},
		Networks:    []string{NetMonitoring, NetEdge},
		Args: []string{
			"--config.file=/etc/prometheus/prometheus.yml",
			"--storage.tsdb.path=/prometheus",
			"--storage.tsdb.retention.time=15d",
		},
		Configs:   []ConfigFile{{Name: "prometheus_yml", Target: "/etc/prometheus/prometheus.yml", Content: prometheusConfig(st)}},
		Mounts:    []Mount{{Type: "volume", Source: st.FullName("prometheus_data"), Target: "/prometheus"}},
		Resources: Resources{LimitMemoryMB: 1024, LimitCPUs: 1, ReserveMemoryMB: 256, ReserveCPUs: 0.25},
		Update:    singleton, Rollback: singletonBack, Restart: restart,
		Healthcheck: &Healthcheck{Test: []string{"CMD", "wget", "-qO-", "http://localhost:" + strconv.Itoa(portPrometheus) + "/-/healthy"},
			Interval: "15s", Timeout: "5s", Retries: 3, StartPeriod: "20s"},
	}
	grafana := Service{
		Name: "grafana", Image: img("grafana"), Replicas: 1,
		UID:         "472", // the grafana image's user
		Constraints: []string{onManager},
		Networks:    []string{NetEdge, NetMonitoring},
		Env: map[string]string{
			"GF_SECURITY_ADMIN_PASSWORD__FILE": "/run/secrets/grafana_admin_password",
			"GF_SERVER_ROOT_URL":               "https://" + grafanaHost + "/",
			"GF_USERS_ALLOW_SIGN_UP":           "false",
		},
		Secrets: []SecretRef{{"grafana_admin_password", "grafana_admin_password"}},
		Mounts:  []Mount{{Type: "volume", Source: st.FullName("grafana_data"), Target: "/var/lib/grafana"}},
		Routes: []Route{{
			Name: "grafana", Hosts: []string{grafanaHost}, Port: portGrafana, EntryPoint: "websecure", TLS: true,
		}},
		Resources: Resources{LimitMemoryMB: 512, LimitCPUs: 1, ReserveMemoryMB: 128, ReserveCPUs: 0.1},
		Update:    singleton, Rollback: singletonBack, Restart: restart,
		Healthcheck: &Healthcheck{Test: []string{"CMD", "wget", "-qO-", "http://localhost:" + strconv.Itoa(portGrafana) + "/api/health"},
			Interval: "15s", Timeout: "5s", Retries: 3, StartPeriod: "30s"},
	}

	agentImage, agentBuilt := own("agent")
	agent := Service{
		Name: "agent", Image: agentImage, Build: agentBuilt, Replicas: 1,
		UID: "65532", // agent/Dockerfile's USER
		// Signalling to the SFU over the edge overlay; media, like any
		// participant's, to the addresses the SFU announces. The backend
		// overlay reaches the stack's engine services, for an operator who
		// points AGENT_STT, AGENT_MT or AGENT_TTS at them.
		Networks: []string{NetEdge, NetBackend},
		Env: map[string]string{
			// The SFU's task itself (one replica), not the service's
			// virtual IP: one hop less, and no dependence on IPVS, as for
			// Prometheus's scrapes.
			"AGENT_SFU":             "ws://tasks." + st.FullName("sfu") + ":" + strconv.Itoa(portSFUHTTP) + "/ws",
			"AGENT_JWT_SECRET_FILE": "/run/secrets/sfu_jwt_secret",
			"AGENT_HEALTH_LISTEN":   "127.0.0.1:" + strconv.Itoa(portAgentHealth),
		},
		Secrets: []SecretRef{{"sfu_jwt_secret", "sfu_jwt_secret"}},
		// One speaker's pipeline peaked at 172 MB resident and took 1.2 CPU
		// seconds per 2.8 s utterance (agent benchmark); the recogniser's
		// model is loaded once per speaker.
		Resources: Resources{LimitMemoryMB: 1024, LimitCPUs: 2, ReserveMemoryMB: 256, ReserveCPUs: 0.5},
		// The new agent finds the rooms the old one holds taken and takes
		// them once the old one has left them.
		Update: stateless, Rollback: statelessBack, Restart: restart,
		StopGrace: "10s",
		Healthcheck: &Healthcheck{Test: []string{"CMD", "/usr/local/bin/agent", "healthcheck"},
			Interval: "10s", Timeout: "3s", Retries: 3, StartPeriod: "10s"},
	}

	// Speech recognition takes whole cores; the SFU's forwarding must not
	// wait for it: off the media node wherever there is another node.
	if len(cl.Nodes) > 1 {
		agent.Constraints = []string{"node.labels.instance != " + cl.MediaNode}
	}

	st.Services = []Service{
		traefik, socketProxy, frontend, api, signaling, stt, translation, tts,
		redis("redis"), redis("redis_gateway"), coturn, sfu, agent, prometheus, grafana,
	}
	for i := range st.Services {
		st.Services[i].ServiceLabels = TraefikLabels(&st.Services[i], edgeNet)
	}
	return st, nil
}

// prometheusConfig scrapes Traefik, the SFU and itself through Swarm's
// tasks.<service> DNS, so every replica is a target.
func prometheusConfig(st *Stack) string {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 15s\nscrape_configs:\n")
	for _, j := range []struct {
		job  string
		svc  string
		port int
	}{{"prometheus", "", portPrometheus}, {"traefik", "traefik", 8080}, {"sfu", "sfu", portSFUMetrics}} {
		target := fmt.Sprintf("'localhost:%d'", j.port)
		b.WriteString("  - job_name: " + j.job + "\n")
		if j.svc == "" {
			b.WriteString("    static_configs:\n      - targets: [" + target + "]\n")
			continue
		}
		fmt.Fprintf(&b, "    dns_sd_configs:\n      - names: ['tasks.%s']\n        type: A\n        port: %d\n", st.FullName(j.svc), j.port)
	}
	return b.String()
}
