package swarmtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/pulumitest"
)

// Pulumi type tokens of the pulumi-docker resources the stack registers.
const (
	TypeNetwork = "docker:index/network:Network"
	TypeSecret  = "docker:index/secret:Secret"
	TypeService = "docker:index/service:Service"
	TypeConfig  = "docker:index/serviceConfig:ServiceConfig"
)

// Declared is what a Pulumi program registered for Docker, translated to
// Engine specs: the same inputs `pulumi up` would hand the provider.
type Declared struct {
	Networks []Declaration[NetworkSpec]
	Secrets  []Declaration[SecretSpec]
	Configs  []Declaration[SecretSpec] // docker configs: same shape as secrets
	Services []DeclaredService
}

// Declaration is one recorded resource: its logical Pulumi name, the ID the
// program saw for it under mocks, and its Engine spec.
type Declaration[S any] struct {
	Name   string
	MockID string
	Spec   S
}

// DeclaredService keeps the raw inputs: a service's spec depends on the real
// IDs of the networks and secrets, known only once those exist.
type DeclaredService struct {
	Name   string
	Inputs map[string]any
}

// Declarations collects the docker resources recorded by m.
func Declarations(m *pulumitest.Mocks) (Declared, error) {
	var d Declared
	for _, r := range m.Resources() {
		switch r.Type {
		case TypeNetwork:
			s, err := NetworkFromInputs(r.InputMap())
			if err != nil {
				return d, fmt.Errorf("%s: %w", r.Name, err)
			}
			d.Networks = append(d.Networks, Declaration[NetworkSpec]{r.Name, r.ID, s})
		case TypeSecret:
			s, err := SecretFromInputs(r.InputMap(), r.Name)
			if err != nil {
				return d, fmt.Errorf("%s: %w", r.Name, err)
			}
			d.Secrets = append(d.Secrets, Declaration[SecretSpec]{r.Name, r.ID, s})
		case TypeConfig:
			s, err := SecretFromInputs(r.InputMap(), r.Name)
			if err != nil {
				return d, fmt.Errorf("%s: %w", r.Name, err)
			}
			d.Configs = append(d.Configs, Declaration[SecretSpec]{r.Name, r.ID, s})
		case TypeService:
			d.Services = append(d.Services, DeclaredService{r.Name, r.InputMap()})
		}
	}
	return d, nil
}

// Deployed maps docker service names to the IDs of the created services.
type Deployed struct {
	Networks map[string]string // docker network name -> ID
	Services map[string]string // docker service name -> ID
	Specs    map[string]ServiceSpec
}

// Deploy creates d's networks, secrets and services on the cluster (all
// removed at cleanup). adjust, if non-nil, may change a translated service
// spec before creation (image substitution) or return false to leave the
// service out; it must say why in the test log.
func (c *Cluster) Deploy(t testing.TB, d Declared, adjust func(spec *ServiceSpec) bool) Deployed {
	t.Helper()
	out := Deployed{Networks: map[string]string{}, Services: map[string]string{}, Specs: map[string]ServiceSpec{}}
	nets, secs, cfgs := IDs{}, IDs{}, IDs{}
	for _, n := range d.Networks {
		id := c.CreateNetwork(t, n.Spec)
		nets[n.MockID] = id
		out.Networks[n.Spec.Name] = id
	}
	names := map[string]string{} // real secret/config ID -> name
	for _, s := range d.Secrets {
		secs[s.MockID] = c.CreateSecret(t, s.Spec)
		names[secs[s.MockID]] = s.Spec.Name
	}
	for _, s := range d.Configs {
		cfgs[s.MockID] = c.CreateConfig(t, s.Spec)
		names[cfgs[s.MockID]] = s.Spec.Name
	}
	volumes := map[string]bool{}
	for _, s := range d.Services {
		spec, err := ServiceFromInputs(s.Inputs, nets, secs, cfgs)
		if err != nil {
			t.Fatalf("translating service %s: %v", s.Name, err)
		}
		// An auto-named secret's name is known only once it exists (the
		// program passes the secret's name output, unknown under mocks).
		for i, r := range spec.TaskTemplate.ContainerSpec.Secrets {
			if r.SecretName == "" {
				spec.TaskTemplate.ContainerSpec.Secrets[i].SecretName = names[r.SecretID]
			}
		}
		for i, r := range spec.TaskTemplate.ContainerSpec.Configs {
			if r.ConfigName == "" {
				spec.TaskTemplate.ContainerSpec.Configs[i].ConfigName = names[r.ConfigID]
			}
		}
		if adjust != nil && !adjust(&spec) {
			continue
		}
		for _, m := range spec.TaskTemplate.ContainerSpec.Mounts {
			if m.Type == "volume" && m.Source != "" && !volumes[m.Source] {
				volumes[m.Source] = true
				c.removeVolumeAtCleanup(t, m.Source)
			}
		}
		out.Services[spec.Name] = c.CreateService(t, spec)
		out.Specs[spec.Name] = spec
	}
	return out
}

// WaitAll waits for every deployed service to run its declared replicas
// (one per node for global services).
func (c *Cluster) WaitAll(t testing.TB, dep Deployed, timeout time.Duration) {
	t.Helper()
	for name, id := range dep.Services {
		want := 1
		if r := dep.Specs[name].Mode.Replicated; r != nil && r.Replicas != nil {
			want = int(*r.Replicas)
		}
		if want > 0 {
			c.WaitRunning(t, name, id, want, timeout)
		}
	}
}
