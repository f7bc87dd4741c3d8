package stacks

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/jbcalling/platform/infra"
)

// Config is the service-stack part of one Pulumi stack's configuration.
// Every key is optional; defaults reproduce the stack the cluster ran by hand.
type Config struct {
	Cluster *infra.Config

	// Prefix of docker object names (platform:stackPrefix, default "translation").
	Prefix string
	// Images per logical service (platform:images, an object), merged over
	// DefaultImages. The entries of the services the program builds are
	// only shown in the view.
	Images map[string]string
	// Replicas overrides per logical service (platform:replicas, an object).
	Replicas map[string]int
	// Prebuilt are images to run instead of building them, by service the
	// program builds (platform:sfuImage, platform:agentImage): for those
	// the program neither builds nor pushes anything.
	Prebuilt map[string]string
	// ACMEEmail is the ACME account email (platform:acmeEmail, default admin@<domain>).
	ACMEEmail string
	// ICEUDPPort and ICETCPPort are the SFU's single-port ICE muxes
	// (platform:sfuIceUdpPort / platform:sfuIceTcpPort, default: first port
	// of the media range).
	ICEUDPPort int
	ICETCPPort int
	// TURNPort is coturn's listening port, UDP and TCP (platform:turnPort,
	// default: second port of the media range).
	TURNPort int
	// TURNRelayPorts is how many relay ports coturn gets at the top of the
	// media range (platform:turnRelayPorts, default 20). Each is one host-mode
	// published port (Docker publishes no ranges; many ports are slow).
	TURNRelayPorts int
}

// Config keys (all in the project namespace).
const (
	keyPrefix     = "platform:stackPrefix"
	keyImages     = "platform:images"
	keyReplicas   = "platform:replicas"
	keySFUImage   = "platform:sfuImage"
	keyAgentImage = "platform:agentImage"
	keyACMEEmail  = "platform:acmeEmail"
	keyICEUDP     = "platform:sfuIceUdpPort"
	keyICETCP     = "platform:sfuIceTcpPort"
	keyTURNPort   = "platform:turnPort"
	keyTURNRelays = "platform:turnRelayPorts"
	// KeyACMEToken is the Cloudflare API token Traefik uses for the ACME
	// DNS-01 challenge (Zone:DNS:Edit); falls back to KeyCloudflareToken.
	KeyACMEToken       = "platform:acmeDnsToken"
	KeyCloudflareToken = "cloudflare:apiToken"
)

// DefaultImages are the images the hand-run stack used (pinned tags).
var DefaultImages = map[string]string{
	"traefik":       "traefik:v3.0.4",
	"frontend":      "jackboun11/jbcalling-frontend:1.0.9",
	"api":           "jackboun11/jbcalling-api:1.0.5",
	"signaling":     "jackboun11/jbcalling-signaling:1.0.5",
	"stt":           "jackboun11/jbcalling-stt:1.0.6",
	"translation":   "jackboun11/jbcalling-translation:1.0.1",
	"tts":           "jackboun11/jbcalling-tts:1.0.6",
	"redis":         "redis:7.4.1-alpine",
	"redis_gateway": "redis:7.4.1-alpine",
	"coturn":        "coturn/coturn:4.6.2",
	"socket_proxy":  "tecnativa/docker-socket-proxy:0.3.0",
	"prometheus":    "prom/prometheus:v2.54.1",
	"grafana":       "grafana/grafana:11.2.2",
	"sfu":           "sfu:local",
	"agent":         "agent:local",
}

// imageRef is a permissive docker reference check: [registry/]path[:tag][@digest].
var imageRef = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$`)

var prefixRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// LoadConfig reads the stack's service configuration from Pulumi config.
func LoadConfig(ctx *pulumi.Context, cluster *infra.Config) (*Config, error) {
	return ConfigFromMap(cluster, ctx.GetConfig)
}

// ConfigFromMap is LoadConfig over any config lookup (fully qualified keys,
// values as the Pulumi CLI passes them: scalars as strings, objects as
// JSON). The program and cmd/topology share it, so the view is rendered
// from exactly what `pulumi up` reads. Every problem is reported, each
// naming its key.
func ConfigFromMap(cluster *infra.Config, get func(key string) (string, bool)) (*Config, error) {
	if cluster == nil {
		return nil, errors.New("stacks: no cluster config")
	}
	l := configLoader{get: get, c: &Config{
		Cluster:        cluster,
		Prefix:         "translation",
		Images:         maps.Clone(DefaultImages),
		Prebuilt:       map[string]string{},
		Replicas:       map[string]int{},
		ACMEEmail:      "admin@" + cluster.Domain,
		ICEUDPPort:     cluster.MediaPorts.From,
		ICETCPPort:     cluster.MediaPorts.From,
		TURNPort:       cluster.MediaPorts.From + 1,
		TURNRelayPorts: 20,
	}}
	c := l.c
	if v, ok := get(keyPrefix); ok {
		if !prefixRe.MatchString(v) {
			l.bad(keyPrefix, "%q is not a docker name prefix (lowercase letters, digits, '-', up to 31)", v)
		}
		c.Prefix = v
	}
	l.images()
	l.replicas()
	for _, p := range []struct{ svc, key string }{{"sfu", keySFUImage}, {"agent", keyAgentImage}} {
		if v, ok := get(p.key); ok && v != "" {
			if !imageRef.MatchString(v) {
				l.bad(p.key, "%q is not an image reference", v)
			}
			c.Prebuilt[p.svc] = v
		}
	}
	if v, ok := get(keyACMEEmail); ok {
		if at := strings.Index(v, "@"); at < 1 || at == len(v)-1 || strings.ContainsAny(v, " \t") {
			l.bad(keyACMEEmail, "%q is not an email address", v)
		}
		c.ACMEEmail = v
	}
	l.mediaPorts()
	if len(l.errs) > 0 {
		slices.SortFunc(l.errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, fmt.Errorf("stack config: %w", errors.Join(l.errs...))
	}
	return c, nil
}

// configLoader reads one Config, collecting every problem.
type configLoader struct {
	get  func(key string) (string, bool)
	c    *Config
	errs []error
}

func (l *configLoader) bad(key, format string, a ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
}

func (l *configLoader) images() {
	v, ok := l.get(keyImages)
	if !ok {
		return
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		l.bad(keyImages, "not an object of service → image: %v", err)
	}
	for _, svc := range slices.Sorted(maps.Keys(m)) {
		if _, known := DefaultImages[svc]; !known {
			l.bad(keyImages, "unknown service %q (known: %s)", svc, strings.Join(slices.Sorted(maps.Keys(DefaultImages)), ", "))
			continue
		}
		if !imageRef.MatchString(m[svc]) {
			l.bad(keyImages, "service %q: %q is not an image reference", svc, m[svc])
			continue
		}
		l.c.Images[svc] = m[svc]
	}
}

func (l *configLoader) replicas() {
	v, ok := l.get(keyReplicas)
	if !ok {
		return
	}
	var m map[string]int
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		l.bad(keyReplicas, "not an object of service → replica count: %v", err)
	}
	for _, svc := range slices.Sorted(maps.Keys(m)) {
		switch {
		case !replicable[svc]:
			l.bad(keyReplicas, "service %q cannot be scaled (known: %s)", svc, strings.Join(slices.Sorted(maps.Keys(replicable)), ", "))
		case m[svc] < 0 || m[svc] > 50:
			l.bad(keyReplicas, "service %q: %d replicas is outside 0-50", svc, m[svc])
		default:
			l.c.Replicas[svc] = m[svc]
		}
	}
}

// mediaPorts reads the SFU's and coturn's ports, which must lie in the
// media range the firewall opens and not overlap.
func (l *configLoader) mediaPorts() {
	c := l.c
	for _, p := range []struct {
		key string
		dst *int
	}{{keyICEUDP, &c.ICEUDPPort}, {keyICETCP, &c.ICETCPPort}, {keyTURNPort, &c.TURNPort}, {keyTURNRelays, &c.TURNRelayPorts}} {
		v, ok := l.get(p.key)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			l.bad(p.key, "%q is not an integer", v)
			continue
		}
		*p.dst = n
	}
	mr := c.Cluster.MediaPorts
	ports := []struct {
		key  string
		port int
	}{{keyICEUDP, c.ICEUDPPort}, {keyICETCP, c.ICETCPPort}, {keyTURNPort, c.TURNPort}}
	for _, p := range ports {
		if p.port < mr.From || p.port > mr.To {
			l.bad(p.key, "port %d is outside the media range %d-%d that the firewall opens", p.port, mr.From, mr.To)
		}
	}
	if c.TURNRelayPorts < 1 || c.TURNRelayPorts > 100 {
		l.bad(keyTURNRelays, "%d is outside 1-100", c.TURNRelayPorts)
	} else {
		lo, hi := c.TURNRelayRange()
		if lo < mr.From {
			l.bad(keyTURNRelays, "%d relay ports do not fit in the media range %d-%d", c.TURNRelayPorts, mr.From, mr.To)
		}
		for _, p := range ports {
			if p.port >= lo && p.port <= hi {
				l.bad(p.key, "port %d overlaps coturn's relay ports %d-%d (%s)", p.port, lo, hi, keyTURNRelays)
			}
		}
	}
	if c.TURNPort == c.ICEUDPPort || c.TURNPort == c.ICETCPPort {
		l.bad(keyTURNPort, "port %d is also the SFU's ICE port", c.TURNPort)
	}
}

// TURNRelayRange is coturn's relay port range: the top of the media range.
func (c *Config) TURNRelayRange() (lo, hi int) {
	hi = c.Cluster.MediaPorts.To
	return hi - c.TURNRelayPorts + 1, hi
}

// replicable are the services whose replica count config may override
// (singletons holding a volume, a host port or ACME state are not).
var replicable = map[string]bool{
	"frontend": true, "api": true, "signaling": true, "stt": true,
	"translation": true, "tts": true,
}

// ACMEToken is the Cloudflare API token Traefik's DNS-01 challenge uses, as
// a secret: platform:acmeDnsToken if set, else cloudflare:apiToken (the
// token infra's Cloudflare provider uses; it needs Zone:DNS:Edit either
// way), else the CLOUDFLARE_API_TOKEN environment variable that provider
// also falls back to.
func ACMEToken(ctx *pulumi.Context) (pulumi.StringOutput, error) {
	for _, k := range []string{KeyACMEToken, KeyCloudflareToken} {
		if _, ok := ctx.GetConfig(k); ok {
			return config.GetSecret(ctx, k), nil
		}
	}
	if v := os.Getenv("CLOUDFLARE_API_TOKEN"); v != "" {
		return pulumi.ToSecret(pulumi.String(v)).(pulumi.StringOutput), nil
	}
	return pulumi.StringOutput{}, fmt.Errorf("%s: no Cloudflare token for Traefik's ACME DNS-01 challenge: set it with `pulumi config set --secret %s <token>` (or %s, or CLOUDFLARE_API_TOKEN)",
		KeyACMEToken, KeyACMEToken, KeyCloudflareToken)
}
