package smoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jbcalling/platform/sfu/auth"
)

// Environment of the live run (`go test ./smoke -run Live`).
const (
	// outputsEnv names the file holding `pulumi stack output --json
	// --show-secrets` of the stack under test.
	outputsEnv = "SMOKE_OUTPUTS"
	// jwtSecretEnv overrides the SFU's JWT secret when the stack does not
	// export it.
	jwtSecretEnv = "SMOKE_JWT_SECRET"
	// apiHealthPathEnv overrides the api service's health path (/health).
	apiHealthPathEnv = "SMOKE_API_HEALTH_PATH"
	// replicaHeaderEnv names a response header the frontend sets to its
	// task or host name; with it the check proves every replica answered.
	replicaHeaderEnv = "SMOKE_REPLICA_HEADER"
)

// Outputs is the part of the stack outputs (program/: infra's "nodes" and
// "urls", plus what the service stack exports) that the smoke test reads.
type Outputs struct {
	Nodes map[string]struct {
		InternalIP string `json:"internalIp"`
		ExternalIP string `json:"externalIp"`
		Role       string `json:"role"`
	} `json:"nodes"`
	// URLs by name: apex, www, api, grafana (https://...), webrtc
	// (wss://webrtc.<domain>:8443) and media (a hostname).
	URLs map[string]string `json:"urls"`

	// Optional: the media node's name (else the media hostname is resolved
	// and must point at one of the nodes).
	MediaNode string `json:"mediaNode"`
	// Optional, secret: the HS256 key the SFU verifies join tokens with.
	SFUJWTSecret string `json:"sfuJwtSecret"`
	// Optional: the frontend's replica count (default 3).
	FrontendReplicas int `json:"frontendReplicas"`
}

// Target is a cluster as the smoke test sees it.
type Target struct {
	FrontendURL      string // https://<domain>/
	WWWURL           string // https://www.<domain>/ (optional)
	FrontendReplicas int
	ReplicaHeader    string
	APIHealthURL     string // https://api.<domain>/health
	SFUURL           string // https://webrtc.<domain>:8443
	SignallingURL    string // wss://webrtc.<domain>:8443/ws
	MediaIP          string // the media node's external IP
	JWTSecret        []byte
}

// TargetFromOutputs reads the stack outputs JSON. lookup resolves the media
// hostname (net.DefaultResolver.LookupHost in the live run); env reads the
// overrides above (os.Getenv). Missing outputs are errors naming the output.
func TargetFromOutputs(ctx context.Context, raw []byte, lookup func(ctx context.Context, host string) ([]string, error), env func(string) string) (Target, error) {
	var o Outputs
	if err := json.Unmarshal(raw, &o); err != nil {
		return Target{}, fmt.Errorf("stack outputs: %w", err)
	}
	need := func(name string) (string, error) {
		v := o.URLs[name]
		if v == "" {
			return "", fmt.Errorf("stack outputs: urls.%s is missing", name)
		}
		return v, nil
	}
	var t Target
	apex, err := need("apex")
	if err != nil {
		return t, err
	}
	api, err := need("api")
	if err != nil {
		return t, err
	}
	signalling, err := need("webrtc")
	if err != nil {
		return t, err
	}
	su, err := url.Parse(signalling)
	if err != nil || su.Scheme != "wss" || su.Host == "" {
		return t, fmt.Errorf("stack outputs: urls.webrtc %q is not a wss:// URL", signalling)
	}
	t.FrontendURL = strings.TrimSuffix(apex, "/") + "/"
	if www := o.URLs["www"]; www != "" {
		t.WWWURL = strings.TrimSuffix(www, "/") + "/"
	}
	t.FrontendReplicas = o.FrontendReplicas
	if t.FrontendReplicas <= 0 {
		t.FrontendReplicas = 3
	}
	t.ReplicaHeader = env(replicaHeaderEnv)
	path := env(apiHealthPathEnv)
	if path == "" {
		path = "/health"
	}
	t.APIHealthURL = strings.TrimSuffix(api, "/") + "/" + strings.TrimPrefix(path, "/")
	t.SFUURL = "https://" + su.Host
	t.SignallingURL = "wss://" + su.Host + "/ws"

	if t.MediaIP, err = o.mediaIP(ctx, lookup); err != nil {
		return t, err
	}
	secret := o.SFUJWTSecret
	if s := env(jwtSecretEnv); s != "" {
		secret = s
	}
	if secret != "" {
		t.JWTSecret = []byte(secret)
	}
	return t, nil
}

// mediaIP is the media node's external IP: the mediaNode output's, or
// where the media hostname resolves to among the nodes' addresses.
func (o Outputs) mediaIP(ctx context.Context, lookup func(ctx context.Context, host string) ([]string, error)) (string, error) {
	if o.MediaNode != "" {
		n, ok := o.Nodes[o.MediaNode]
		if !ok || n.ExternalIP == "" {
			return "", fmt.Errorf("stack outputs: mediaNode %q has no nodes.%s.externalIp", o.MediaNode, o.MediaNode)
		}
		return n.ExternalIP, nil
	}
	host := o.URLs["media"]
	if host == "" {
		return "", errors.New("stack outputs: urls.media is missing (and no mediaNode output names the media node)")
	}
	addrs, err := lookup(ctx, host)
	if err != nil {
		return "", fmt.Errorf("resolving the media hostname %s: %w", host, err)
	}
	external := map[string]string{} // IP -> node
	for name, n := range o.Nodes {
		external[n.ExternalIP] = name
	}
	for _, a := range addrs {
		if _, ok := external[a]; ok {
			return a, nil
		}
	}
	known := make([]string, 0, len(external))
	for ip, n := range external {
		known = append(known, n+"="+ip)
	}
	slices.Sort(known)
	return "", fmt.Errorf("the media hostname %s resolves to %v, none of the nodes' external IPs (%s): "+
		"the DNS record is wrong or proxied (media must be DNS-only)", host, addrs, strings.Join(known, ", "))
}

// Token signs a join token for the smoke participants. Without a secret it
// fails: the stack's SFU never admits anonymous joins, so only the media
// checks fail, naming what is missing, and the HTTP checks still run.
func (t Target) Token(room, name string) (string, error) {
	if len(t.JWTSecret) == 0 {
		return "", fmt.Errorf("no SFU JWT secret: the stack outputs have no sfuJwtSecret and %s is not set", jwtSecretEnv)
	}
	return auth.Sign(t.JWTSecret, room, name, name, 10*time.Minute)
}

// LookupHost is the live run's resolver.
func LookupHost(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
}
