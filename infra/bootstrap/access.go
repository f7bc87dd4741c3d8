package bootstrap

import (
	"fmt"

	"github.com/jbcalling/platform/infra"
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Certificates last three years and are renewed by any `pulumi up` in their
// last 30 days (the tls provider then plans a replacement, and the manager's
// server files and the docker provider follow).
const (
	certValidityHours = 3 * 365 * 24
	certRenewalHours  = 30 * 24
)

// AccessArgs configures NewAccess. The zero value is fine.
type AccessArgs struct {
	// Organization goes into the certificates' subject (default "platform").
	Organization string
}

// Access is the generated credentials the program administers the cluster
// with: an SSH key pair for the bootstrap commands and a private CA plus a
// client certificate for the Docker API's mutual TLS. Every private half is a
// Pulumi secret; nothing here is ever written to the repository or logged.
type Access struct {
	pulumi.ResourceState

	// SSHPublicKey is the OpenSSH public key for the VMs' ssh-keys metadata.
	SSHPublicKey pulumi.StringOutput
	// SSHPrivateKey is the matching OpenSSH private key (secret).
	SSHPrivateKey pulumi.StringOutput

	// CACertPEM is the Docker API CA certificate (the provider's caMaterial).
	CACertPEM pulumi.StringOutput
	// ClientCertPEM / ClientKeyPEM: the docker provider's client identity
	// (ClientKeyPEM is secret).
	ClientCertPEM pulumi.StringOutput
	ClientKeyPEM  pulumi.StringOutput

	caKey *tls.PrivateKey
	caPEM pulumi.StringOutput
	org   string
}

// NewAccess generates the SSH key pair, the Docker API CA and the client
// certificate.
func NewAccess(ctx *pulumi.Context, name string, args *AccessArgs, opts ...pulumi.ResourceOption) (*Access, error) {
	if args == nil {
		args = &AccessArgs{}
	}
	a := &Access{org: args.Organization}
	if a.org == "" {
		a.org = "platform"
	}
	if err := infra.DeclareComponent(ctx, "platform:bootstrap:Access", name, a, func(child pulumi.ResourceOption) (pulumi.Map, error) {
		return a.declare(ctx, name, child)
	}, opts...); err != nil {
		return nil, err
	}
	return a, nil
}

// declare generates the SSH key pair, the CA and the client certificate
// under child.
func (a *Access) declare(ctx *pulumi.Context, name string, child pulumi.ResourceOption) (pulumi.Map, error) {

	// Ed25519: short, supported by GCE's ssh-keys metadata and by the
	// command provider's SSH client.
	sshKey, err := tls.NewPrivateKey(ctx, name+"-ssh", &tls.PrivateKeyArgs{Algorithm: pulumi.String("ED25519")}, child)
	if err != nil {
		return nil, err
	}
	a.SSHPublicKey = sshKey.PublicKeyOpenssh
	a.SSHPrivateKey = pulumi.ToSecret(sshKey.PrivateKeyOpenssh).(pulumi.StringOutput)

	caKey, err := tls.NewPrivateKey(ctx, name+"-docker-ca", &tls.PrivateKeyArgs{
		Algorithm:  pulumi.String("ECDSA"),
		EcdsaCurve: pulumi.String("P256"),
	}, child)
	if err != nil {
		return nil, err
	}
	ca, err := tls.NewSelfSignedCert(ctx, name+"-docker-ca", &tls.SelfSignedCertArgs{
		PrivateKeyPem:       caKey.PrivateKeyPem,
		IsCaCertificate:     pulumi.Bool(true),
		ValidityPeriodHours: pulumi.Int(certValidityHours),
		EarlyRenewalHours:   pulumi.Int(certRenewalHours),
		AllowedUses:         pulumi.ToStringArray([]string{"cert_signing", "crl_signing", "digital_signature"}),
		Subject: &tls.SelfSignedCertSubjectArgs{
			CommonName:   pulumi.String(name + " docker API CA"),
			Organization: pulumi.String(a.org),
		},
	}, child)
	if err != nil {
		return nil, err
	}
	a.caKey = caKey
	a.caPEM = ca.CertPem
	a.CACertPEM = ca.CertPem

	clientKey, clientCert, err := a.issue(ctx, name+"-docker-client", "docker client", nil, nil, []string{"client_auth", "digital_signature", "key_encipherment"}, child)
	if err != nil {
		return nil, err
	}
	a.ClientCertPEM = clientCert.CertPem
	a.ClientKeyPEM = pulumi.ToSecret(clientKey.PrivateKeyPem).(pulumi.StringOutput)

	return pulumi.Map{
		"sshPublicKey":  a.SSHPublicKey,
		"caCertPem":     a.CACertPEM,
		"clientCertPem": a.ClientCertPEM,
	}, nil
}

// issue creates a key and a certificate signed by the Docker API CA.
func (a *Access) issue(ctx *pulumi.Context, name, cn string, ips pulumi.StringArrayInput, dns pulumi.StringArrayInput, uses []string, opts ...pulumi.ResourceOption) (*tls.PrivateKey, *tls.LocallySignedCert, error) {
	if a.caKey == nil {
		return nil, nil, fmt.Errorf("bootstrap: access %s has no CA", name)
	}
	key, err := tls.NewPrivateKey(ctx, name, &tls.PrivateKeyArgs{
		Algorithm:  pulumi.String("ECDSA"),
		EcdsaCurve: pulumi.String("P256"),
	}, opts...)
	if err != nil {
		return nil, nil, err
	}
	csr, err := tls.NewCertRequest(ctx, name, &tls.CertRequestArgs{
		PrivateKeyPem: key.PrivateKeyPem,
		IpAddresses:   ips,
		DnsNames:      dns,
		Subject: &tls.CertRequestSubjectArgs{
			CommonName:   pulumi.String(cn),
			Organization: pulumi.String(a.org),
		},
	}, opts...)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.NewLocallySignedCert(ctx, name, &tls.LocallySignedCertArgs{
		CertRequestPem:      csr.CertRequestPem,
		CaPrivateKeyPem:     a.caKey.PrivateKeyPem,
		CaCertPem:           a.caPEM,
		ValidityPeriodHours: pulumi.Int(certValidityHours),
		EarlyRenewalHours:   pulumi.Int(certRenewalHours),
		AllowedUses:         pulumi.ToStringArray(uses),
	}, opts...)
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}
