package swarmtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/jbcalling/platform/stacks"
)

// localStack is the stack of testdata/Pulumi.local.yaml as the program
// sees it: cluster config, topology, stack config and the validated model.
type localStack struct {
	Raw      map[string]string
	Cluster  *infra.Config
	Topology infra.Topology
	Config   *stacks.Config
	Stack    *stacks.Stack
}

// loadLocalStack reads the test stack file the way the Pulumi CLI hands
// config to the program (scalars as strings, lists and objects as JSON) and
// builds the model through the program's own loading path.
func loadLocalStack(t testing.TB) localStack { return loadStackFile(t, "local") }

// loadStackFile loads testdata/Pulumi.<stack>.yaml.
func loadStackFile(t testing.TB, stack string) localStack {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "Pulumi."+stack+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("testdata/Pulumi.local.yaml: %v", err)
	}
	cfg := map[string]string{}
	for k, v := range file.Config {
		switch v := v.(type) {
		case string:
			cfg[k] = v
		case map[string]any, []any:
			j, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("testdata/Pulumi.local.yaml: %s: %v", k, err)
			}
			cfg[k] = string(j)
		default:
			cfg[k] = fmt.Sprint(v)
		}
	}
	get := func(k string) (string, bool) { v, ok := cfg[k]; return v, ok }
	cl, err := infra.ParseConfig(stack, get)
	if err != nil {
		t.Fatalf("cluster config: %v", err)
	}
	top := infra.Plan(cl)
	sc, err := stacks.ConfigFromMap(cl, get)
	if err != nil {
		t.Fatalf("stack config: %v", err)
	}
	st, err := stacks.Catalog(top, sc)
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	if err := stacks.Validate(top, st); err != nil {
		t.Fatalf("the local test stack does not validate: %v", err)
	}
	return localStack{Raw: cfg, Cluster: cl, Topology: top, Config: sc, Stack: st}
}

// testCA stands in for the Cloudflare Origin CA under the mocks: the SFU's
// TLS key and certificate secrets then hold a real key and a certificate
// for the declared host names, which the test's clients trust.
type testCA struct {
	mu      sync.Mutex
	key     *ecdsa.PrivateKey // the CA's
	cert    *x509.Certificate
	siteKey *ecdsa.PrivateKey // what tls.PrivateKey "generated"
	Pool    *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "swarmtest origin CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{key: key, cert: cert, Pool: pool}
}

// hooks make the mocks answer like the real providers where the stack's
// secrets need real material.
func (ca *testCA) hooks(m *pulumitest.Mocks) {
	m.OnResource("tls:index/privateKey:PrivateKey", func(_ pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		ca.mu.Lock()
		ca.siteKey = k
		ca.mu.Unlock()
		outs["privateKeyPem"] = resource.NewProperty(string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
		return outs, nil
	})
	m.OnResource("cloudflare:index/originCaCertificate:OriginCaCertificate", func(args pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		var hosts []string
		if v, ok := args.Inputs["hostnames"]; ok && v.IsArray() {
			for _, h := range v.ArrayValue() {
				if h.IsString() {
					hosts = append(hosts, h.StringValue())
				}
			}
		}
		ca.mu.Lock()
		site := ca.siteKey
		ca.mu.Unlock()
		if site == nil || len(hosts) == 0 {
			return nil, fmt.Errorf("origin certificate requested before its key, or without hostnames (%v)", hosts)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &site.PublicKey, ca.key)
		if err != nil {
			return nil, err
		}
		outs["certificate"] = resource.NewProperty(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
		return outs, nil
	})
	m.OnResource("random:index/randomPassword:RandomPassword", func(_ pulumi.MockResourceArgs, outs resource.PropertyMap) (resource.PropertyMap, error) {
		// Any bcrypt-shaped value: only the htpasswd secret's format matters here.
		outs["bcryptHash"] = resource.NewProperty("$2y$05$swarmtestswarmtestswarmuJ2b3Z6tQ0b7E4kqkB2fW5mYwQ1f3a")
		return outs, nil
	})
}

// recordStack runs stacks.NewStack (the deployment the Pulumi program
// registers) under recording mocks, with the local machine's address as
// every node's external IP and the images built here as the prebuilt ones.
func recordStack(t testing.TB, ls localStack, ca *testCA, im images) *pulumitest.Mocks {
	t.Helper()
	return recordStackAt(t, ls, ca, im, "127.0.0.1")
}

// recordStackAt is recordStack with mediaIPs as every node's external IP:
// the address, or comma-separated addresses (the SFU's --public-ip takes a
// list), of this machine where the clients reach the SFU's host-mode ports.
func recordStackAt(t testing.TB, ls localStack, ca *testCA, im images, mediaIPs string) *pulumitest.Mocks {
	t.Helper()
	m := pulumitest.NewMocks()
	ca.hooks(m)
	err := pulumitest.RunWith(t, m, "platform", ls.Cluster.Stack, ls.Raw, func(ctx *pulumi.Context) error {
		prov, err := docker.NewProvider(ctx, "local", &docker.ProviderArgs{Host: pulumi.String("unix:///var/run/docker.sock")})
		if err != nil {
			return err
		}
		ips := map[string]pulumi.StringInput{}
		for _, n := range ls.Cluster.Nodes {
			// The announced media address: clients here reach the SFU's
			// host-mode ports there.
			ips[n.Name] = pulumi.String(mediaIPs)
		}
		_, err = stacks.NewStack(ctx, "stack", &stacks.StackArgs{
			Topology: ls.Topology, Config: ls.Config, Stack: ls.Stack,
			DockerProvider: prov, ExternalIPs: ips,
			ACMEDNSToken: pulumi.ToSecret(pulumi.String("swarmtest-no-token")).(pulumi.StringOutput),
			Prebuilt:     im.prebuilt(),
		})
		return err
	})
	if err != nil {
		t.Fatalf("the stack program under mocks: %v", err)
	}
	return m
}

// secretValue returns the decoded data of the declared secret whose logical
// name ends in suffix.
func secretValue(t testing.TB, d Declared, suffix string) string {
	t.Helper()
	for _, s := range d.Secrets {
		if strings.HasSuffix(s.Name, suffix) {
			return decodeB64(t, s.Spec.Data)
		}
	}
	t.Fatalf("no declared secret named *%s", suffix)
	return ""
}

// localClient sends every request to 127.0.0.1 (keeping the port), so URLs
// can carry the declared host names: Host header and TLS server name are
// those names, as for a user whose DNS points at this machine.
func localClient(roots *x509.CertPool) *http.Client { return clientTo("127.0.0.1", roots) }

// clientTo is localClient for another address of this machine.
func clientTo(ip string, roots *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(ip, port))
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	if roots == nil {
		// Traefik's certificates come from ACME (Cloudflare DNS-01), which
		// cannot run offline: it serves its default certificate here.
		tr.TLSClientConfig.InsecureSkipVerify = true
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func sortedNames(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
