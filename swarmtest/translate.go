package swarmtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
)

// This file translates the inputs of pulumi-docker v4 resources, as the
// Pulumi program registered them (recorded under mocks, as plain JSON-like
// values), into Docker Engine API specs. The input schema is the SDK's own
// plain types (docker.ServiceTaskSpec, ...), decoded with unknown fields
// rejected, so a field the program sets that this translator does not carry
// over fails the test instead of silently vanishing.

// Service inputs of docker:index/service:Service (the SDK's unexported
// serviceArgs, built from its exported plain types).
type serviceInputs struct {
	Auth           *docker.ServiceAuth           `json:"auth"`
	ConvergeConfig *docker.ServiceConvergeConfig `json:"convergeConfig"`
	EndpointSpec   *docker.ServiceEndpointSpec   `json:"endpointSpec"`
	Labels         []docker.ServiceLabel         `json:"labels"`
	Mode           *docker.ServiceMode           `json:"mode"`
	Name           *string                       `json:"name"`
	RollbackConfig *docker.ServiceRollbackConfig `json:"rollbackConfig"`
	TaskSpec       docker.ServiceTaskSpec        `json:"taskSpec"`
	UpdateConfig   *docker.ServiceUpdateConfig   `json:"updateConfig"`
}

type networkInputs struct {
	Attachable     *bool                      `json:"attachable"`
	CheckDuplicate *bool                      `json:"checkDuplicate"`
	Driver         *string                    `json:"driver"`
	Ingress        *bool                      `json:"ingress"`
	Internal       *bool                      `json:"internal"`
	IpamConfigs    []docker.NetworkIpamConfig `json:"ipamConfigs"`
	IpamDriver     *string                    `json:"ipamDriver"`
	IpamOptions    map[string]string          `json:"ipamOptions"`
	Ipv6           *bool                      `json:"ipv6"`
	Labels         []docker.NetworkLabel      `json:"labels"`
	Name           *string                    `json:"name"`
	Options        map[string]string          `json:"options"`
}

type secretInputs struct {
	Data   string               `json:"data"`
	Labels []docker.SecretLabel `json:"labels"`
	Name   *string              `json:"name"`
}

// decodeStrict decodes plain inputs into out, rejecting unknown fields.
// encoding/json matches keys case-insensitively, so the SDK's Go field
// names (SecretId, NetworksAdvanceds) accept the camelCase input keys.
func decodeStrict(in map[string]any, out any) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

// Engine API types (the subset of swarm.ServiceSpec & co. the stack uses).

// NetworkSpec is the body of POST /networks/create.
type NetworkSpec struct {
	Name       string
	Driver     string            `json:",omitempty"`
	Scope      string            `json:",omitempty"`
	Internal   bool              `json:",omitempty"`
	Attachable bool              `json:",omitempty"`
	Ingress    bool              `json:",omitempty"`
	EnableIPv6 bool              `json:",omitempty"`
	IPAM       *IPAM             `json:",omitempty"`
	Options    map[string]string `json:",omitempty"`
	Labels     map[string]string `json:",omitempty"`
}

// IPAM is a network's address management.
type IPAM struct {
	Driver  string            `json:",omitempty"`
	Options map[string]string `json:",omitempty"`
	Config  []IPAMConfig      `json:",omitempty"`
}

// IPAMConfig is one address pool.
type IPAMConfig struct {
	Subnet     string            `json:",omitempty"`
	IPRange    string            `json:",omitempty"`
	Gateway    string            `json:",omitempty"`
	AuxAddress map[string]string `json:",omitempty"`
}

// SecretSpec is the body of POST /secrets/create (Data is base64, as
// pulumi-docker's `data` input already is).
type SecretSpec struct {
	Name   string
	Labels map[string]string `json:",omitempty"`
	Data   string
}

// ServiceSpec is the Engine's swarm.ServiceSpec.
type ServiceSpec struct {
	Name           string
	Labels         map[string]string `json:",omitempty"`
	TaskTemplate   TaskSpec
	Mode           ServiceMode
	UpdateConfig   *UpdateConfig `json:",omitempty"`
	RollbackConfig *UpdateConfig `json:",omitempty"`
	EndpointSpec   *EndpointSpec `json:",omitempty"`
}

// ServiceMode is replicated or global.
type ServiceMode struct {
	Replicated *struct{ Replicas *uint64 } `json:",omitempty"`
	Global     *struct{}                   `json:",omitempty"`
}

// TaskSpec is the Engine's swarm.TaskSpec.
type TaskSpec struct {
	ContainerSpec ContainerSpec
	Resources     *Resources      `json:",omitempty"`
	RestartPolicy *RestartPolicy  `json:",omitempty"`
	Placement     *Placement      `json:",omitempty"`
	Networks      []NetworkAttach `json:",omitempty"`
	LogDriver     *Driver         `json:",omitempty"`
	ForceUpdate   uint64          `json:",omitempty"`
	Runtime       string          `json:",omitempty"`
}

// ContainerSpec is the Engine's swarm.ContainerSpec.
type ContainerSpec struct {
	Image           string
	Labels          map[string]string `json:",omitempty"`
	Command         []string          `json:",omitempty"`
	Args            []string          `json:",omitempty"`
	Hostname        string            `json:",omitempty"`
	Env             []string          `json:",omitempty"`
	Dir             string            `json:",omitempty"`
	User            string            `json:",omitempty"`
	Groups          []string          `json:",omitempty"`
	StopSignal      string            `json:",omitempty"`
	StopGracePeriod *int64            `json:",omitempty"`
	ReadOnly        bool              `json:",omitempty"`
	Mounts          []Mount           `json:",omitempty"`
	Healthcheck     *Healthcheck      `json:",omitempty"`
	Hosts           []string          `json:",omitempty"`
	DNSConfig       *DNSConfig        `json:",omitempty"`
	Secrets         []FileRef         `json:",omitempty"`
	Configs         []FileRef         `json:",omitempty"`
	Isolation       string            `json:",omitempty"`
	Sysctls         map[string]string `json:",omitempty"`
	CapabilityAdd   []string          `json:",omitempty"`
	CapabilityDrop  []string          `json:",omitempty"`
}

// Mount is a container mount.
type Mount struct {
	Type          string
	Source        string `json:",omitempty"`
	Target        string
	ReadOnly      bool                          `json:",omitempty"`
	BindOptions   *struct{ Propagation string } `json:",omitempty"`
	VolumeOptions *VolumeOptions                `json:",omitempty"`
	TmpfsOptions  *TmpfsOptions                 `json:",omitempty"`
}

// VolumeOptions are a volume mount's options.
type VolumeOptions struct {
	NoCopy       bool              `json:",omitempty"`
	Labels       map[string]string `json:",omitempty"`
	DriverConfig *Driver           `json:",omitempty"`
}

// TmpfsOptions are a tmpfs mount's options.
type TmpfsOptions struct {
	SizeBytes int64  `json:",omitempty"`
	Mode      uint32 `json:",omitempty"`
}

// Driver names a driver with options (log driver, volume driver).
type Driver struct {
	Name    string
	Options map[string]string `json:",omitempty"`
}

// Healthcheck durations are nanoseconds.
type Healthcheck struct {
	Test        []string
	Interval    int64 `json:",omitempty"`
	Timeout     int64 `json:",omitempty"`
	StartPeriod int64 `json:",omitempty"`
	Retries     int   `json:",omitempty"`
}

// DNSConfig is a container's resolver configuration.
type DNSConfig struct {
	Nameservers []string `json:",omitempty"`
	Search      []string `json:",omitempty"`
	Options     []string `json:",omitempty"`
}

// FileRef references a secret or config by ID, mounted as a file.
type FileRef struct {
	File struct {
		Name, UID, GID string
		Mode           uint32
	}
	SecretID   string `json:",omitempty"`
	SecretName string `json:",omitempty"`
	ConfigID   string `json:",omitempty"`
	ConfigName string `json:",omitempty"`
}

// Resources are limits and reservations.
type Resources struct {
	Limits       *ResourceValues `json:",omitempty"`
	Reservations *ResourceValues `json:",omitempty"`
}

// ResourceValues are CPU (1e9 = one CPU) and memory amounts.
type ResourceValues struct {
	NanoCPUs    int64 `json:",omitempty"`
	MemoryBytes int64 `json:",omitempty"`
}

// RestartPolicy durations are nanoseconds.
type RestartPolicy struct {
	Condition   string  `json:",omitempty"`
	Delay       *int64  `json:",omitempty"`
	MaxAttempts *uint64 `json:",omitempty"`
	Window      *int64  `json:",omitempty"`
}

// Placement is where tasks may run.
type Placement struct {
	Constraints []string     `json:",omitempty"`
	Preferences []Preference `json:",omitempty"`
	MaxReplicas uint64       `json:",omitempty"`
	Platforms   []Platform   `json:",omitempty"`
}

// Preference is a spread preference.
type Preference struct {
	Spread struct{ SpreadDescriptor string }
}

// Platform is an OS/architecture pair.
type Platform struct {
	Architecture string `json:",omitempty"`
	OS           string `json:",omitempty"`
}

// NetworkAttach attaches a task to a network by ID.
type NetworkAttach struct {
	Target     string
	Aliases    []string          `json:",omitempty"`
	DriverOpts map[string]string `json:",omitempty"`
}

// UpdateConfig is an update or rollback policy (durations in nanoseconds).
type UpdateConfig struct {
	Parallelism     uint64
	Delay           int64   `json:",omitempty"`
	FailureAction   string  `json:",omitempty"`
	Monitor         int64   `json:",omitempty"`
	MaxFailureRatio float64 `json:",omitempty"`
	Order           string  `json:",omitempty"`
}

// EndpointSpec is how the service is published.
type EndpointSpec struct {
	Mode  string     `json:",omitempty"`
	Ports []PortSpec `json:",omitempty"`
}

// PortSpec is one published port.
type PortSpec struct {
	Name          string `json:",omitempty"`
	Protocol      string `json:",omitempty"`
	TargetPort    uint32
	PublishedPort uint32 `json:",omitempty"`
	PublishMode   string `json:",omitempty"`
}

// IDs maps the IDs a program saw for resources (the mock IDs recorded under
// pulumitest) to the IDs of the real objects created from them.
type IDs map[string]string

func (ids IDs) resolve(kind, mockID string) (string, error) {
	if real, ok := ids[mockID]; ok {
		return real, nil
	}
	return "", fmt.Errorf("%s %q is not one the program declared (known: %v)", kind, mockID, ids.keys())
}

func (ids IDs) keys() []string {
	var k []string
	for id := range ids {
		k = append(k, id)
	}
	sort.Strings(k)
	return k
}

// NetworkFromInputs translates docker:index/network:Network inputs.
func NetworkFromInputs(in map[string]any) (NetworkSpec, error) {
	var n networkInputs
	if err := decodeStrict(in, &n); err != nil {
		return NetworkSpec{}, fmt.Errorf("network inputs: %w", err)
	}
	if n.Name == nil || *n.Name == "" {
		return NetworkSpec{}, fmt.Errorf("network inputs: no name")
	}
	spec := NetworkSpec{
		Name:       *n.Name,
		Driver:     deref(n.Driver),
		Internal:   deref(n.Internal),
		Attachable: deref(n.Attachable),
		Ingress:    deref(n.Ingress),
		EnableIPv6: deref(n.Ipv6),
		Options:    n.Options,
		Labels:     labelMap(n.Labels, func(l docker.NetworkLabel) (string, string) { return l.Label, l.Value }),
	}
	if n.IpamDriver != nil || len(n.IpamConfigs) > 0 || len(n.IpamOptions) > 0 {
		spec.IPAM = &IPAM{Driver: deref(n.IpamDriver), Options: n.IpamOptions}
		for _, c := range n.IpamConfigs {
			spec.IPAM.Config = append(spec.IPAM.Config, IPAMConfig{
				Subnet: deref(c.Subnet), IPRange: deref(c.IpRange), Gateway: deref(c.Gateway), AuxAddress: c.AuxAddress,
			})
		}
	}
	if spec.Driver == "overlay" {
		spec.Scope = "swarm"
	}
	return spec, nil
}

// SecretFromInputs translates docker:index/secret:Secret inputs (and, with
// the same schema, docker:index/serviceConfig:ServiceConfig). A secret
// without a name gets autoName: Pulumi auto-names it from the logical name
// (plus a random suffix, which the test need not reproduce).
func SecretFromInputs(in map[string]any, autoName string) (SecretSpec, error) {
	var s secretInputs
	if err := decodeStrict(in, &s); err != nil {
		return SecretSpec{}, fmt.Errorf("secret inputs: %w", err)
	}
	name := deref(s.Name)
	if name == "" {
		name = autoName
	}
	if name == "" {
		return SecretSpec{}, fmt.Errorf("secret inputs: no name")
	}
	return SecretSpec{
		Name:   name,
		Data:   s.Data,
		Labels: labelMap(s.Labels, func(l docker.SecretLabel) (string, string) { return l.Label, l.Value }),
	}, nil
}

// ServiceFromInputs translates docker:index/service:Service inputs.
// networks, secrets and configs map the IDs the program referenced to real
// IDs.
func ServiceFromInputs(in map[string]any, networks, secrets, configs IDs) (ServiceSpec, error) {
	var s serviceInputs
	if err := decodeStrict(in, &s); err != nil {
		return ServiceSpec{}, fmt.Errorf("service inputs: %w", err)
	}
	if s.Name == nil || *s.Name == "" {
		return ServiceSpec{}, fmt.Errorf("service inputs: no name")
	}
	out, err := serviceSpec(s, networks, secrets, configs)
	if err != nil {
		return ServiceSpec{}, fmt.Errorf("service %s: %w", *s.Name, err)
	}
	return out, nil
}

func serviceSpec(s serviceInputs, networks, secrets, configs IDs) (ServiceSpec, error) {
	out := ServiceSpec{
		Name:   *s.Name,
		Labels: labelMap(s.Labels, func(l docker.ServiceLabel) (string, string) { return l.Label, l.Value }),
	}
	var err error
	if out.TaskTemplate, err = taskSpec(s.TaskSpec, networks, secrets, configs); err != nil {
		return ServiceSpec{}, err
	}
	switch m := s.Mode; {
	case m != nil && deref(m.Global):
		out.Mode.Global = &struct{}{}
	default:
		// pulumi-docker's default is one replicated task.
		n := uint64(1)
		if m != nil && m.Replicated != nil && m.Replicated.Replicas != nil {
			n = uint64(*m.Replicated.Replicas)
		}
		out.Mode.Replicated = &struct{ Replicas *uint64 }{&n}
	}
	if out.UpdateConfig, err = updateConfig((*docker.ServiceUpdateConfig)(s.UpdateConfig)); err != nil {
		return ServiceSpec{}, fmt.Errorf("updateConfig: %w", err)
	}
	if s.RollbackConfig != nil {
		rc := docker.ServiceUpdateConfig(*s.RollbackConfig)
		if out.RollbackConfig, err = updateConfig(&rc); err != nil {
			return ServiceSpec{}, fmt.Errorf("rollbackConfig: %w", err)
		}
	}
	if e := s.EndpointSpec; e != nil {
		es := &EndpointSpec{Mode: deref(e.Mode)}
		for _, p := range e.Ports {
			ps := PortSpec{Name: deref(p.Name), Protocol: or(p.Protocol, "tcp"), TargetPort: uint32(p.TargetPort),
				PublishedPort: uint32(deref(p.PublishedPort)), PublishMode: or(p.PublishMode, "ingress")}
			es.Ports = append(es.Ports, ps)
		}
		out.EndpointSpec = es
	}
	return out, nil
}

func taskSpec(ts docker.ServiceTaskSpec, networks, secrets, configs IDs) (TaskSpec, error) {
	c, err := containerSpec(ts.ContainerSpec, secrets, configs)
	if err != nil {
		return TaskSpec{}, err
	}
	task := TaskSpec{ContainerSpec: c, ForceUpdate: uint64(deref(ts.ForceUpdate)), Runtime: deref(ts.Runtime)}
	if r := ts.Resources; r != nil {
		task.Resources = &Resources{}
		if l := r.Limits; l != nil {
			task.Resources.Limits = &ResourceValues{NanoCPUs: int64(deref(l.NanoCpus)), MemoryBytes: int64(deref(l.MemoryBytes))}
		}
		if v := r.Reservation; v != nil {
			if v.GenericResources != nil {
				return TaskSpec{}, errors.New("taskSpec.resources.reservation.genericResources is not translated")
			}
			task.Resources.Reservations = &ResourceValues{NanoCPUs: int64(deref(v.NanoCpus)), MemoryBytes: int64(deref(v.MemoryBytes))}
		}
	}
	if task.RestartPolicy, err = restartPolicy(ts.RestartPolicy); err != nil {
		return TaskSpec{}, err
	}
	task.Placement = placement(ts.Placement)
	for _, n := range ts.NetworksAdvanceds {
		// The program references networks by resource ID (pulumi-docker#233);
		// "host" names the engine's host network directly.
		target := n.Name
		if target != "host" {
			if target, err = networks.resolve("network", n.Name); err != nil {
				return TaskSpec{}, err
			}
		}
		task.Networks = append(task.Networks, NetworkAttach{Target: target, Aliases: n.Aliases, DriverOpts: optsMap(n.DriverOpts)})
	}
	if ld := ts.LogDriver; ld != nil {
		task.LogDriver = &Driver{Name: ld.Name, Options: ld.Options}
	}
	return task, nil
}

func restartPolicy(rp *docker.ServiceTaskSpecRestartPolicy) (*RestartPolicy, error) {
	if rp == nil {
		return nil, nil
	}
	p := &RestartPolicy{Condition: deref(rp.Condition)}
	var err error
	if p.Delay, err = durPtr(rp.Delay); err != nil {
		return nil, fmt.Errorf("restartPolicy.delay: %w", err)
	}
	if p.Window, err = durPtr(rp.Window); err != nil {
		return nil, fmt.Errorf("restartPolicy.window: %w", err)
	}
	if rp.MaxAttempts != nil {
		n := uint64(*rp.MaxAttempts)
		p.MaxAttempts = &n
	}
	return p, nil
}

func placement(p *docker.ServiceTaskSpecPlacement) *Placement {
	if p == nil {
		return nil
	}
	pl := &Placement{Constraints: p.Constraints, MaxReplicas: uint64(deref(p.MaxReplicas))}
	for _, pref := range p.Prefs {
		// The provider takes each pref verbatim as the spread descriptor
		// (terraform-provider-docker stringSetToPlacementPrefs).
		var pr Preference
		pr.Spread.SpreadDescriptor = pref
		pl.Preferences = append(pl.Preferences, pr)
	}
	for _, pf := range p.Platforms {
		pl.Platforms = append(pl.Platforms, Platform{Architecture: pf.Architecture, OS: pf.Os})
	}
	return pl
}

func containerSpec(cs docker.ServiceTaskSpecContainerSpec, secrets, configs IDs) (ContainerSpec, error) {
	c := ContainerSpec{
		Image:          cs.Image,
		Labels:         labelMap(cs.Labels, func(l docker.ServiceTaskSpecContainerSpecLabel) (string, string) { return l.Label, l.Value }),
		Command:        cs.Commands,
		Args:           cs.Args,
		Hostname:       deref(cs.Hostname),
		Dir:            deref(cs.Dir),
		User:           deref(cs.User),
		Groups:         cs.Groups,
		StopSignal:     deref(cs.StopSignal),
		ReadOnly:       deref(cs.ReadOnly),
		Isolation:      deref(cs.Isolation),
		Sysctls:        cs.Sysctl,
		CapabilityAdd:  cs.CapAdds,
		CapabilityDrop: cs.CapDrops,
		Mounts:         mounts(cs.Mounts),
	}
	if c.Image == "" {
		return c, errors.New("no image")
	}
	if cs.Privileges != nil {
		return c, errors.New("taskSpec.containerSpec.privileges is not translated")
	}
	// Env is a map in pulumi-docker; the Engine wants KEY=VALUE, sorted for
	// a stable spec.
	for _, k := range slices.Sorted(maps.Keys(cs.Env)) {
		c.Env = append(c.Env, k+"="+cs.Env[k])
	}
	var err error
	if c.StopGracePeriod, err = durPtr(cs.StopGracePeriod); err != nil {
		return c, fmt.Errorf("stopGracePeriod: %w", err)
	}
	if c.Healthcheck, err = healthcheck(cs.Healthcheck); err != nil {
		return c, err
	}
	for _, h := range cs.Hosts {
		c.Hosts = append(c.Hosts, h.Ip+" "+h.Host)
	}
	if d := cs.DnsConfig; d != nil {
		c.DNSConfig = &DNSConfig{Nameservers: d.Nameservers, Search: d.Searches, Options: d.Options}
	}
	for _, sec := range cs.Secrets {
		id, err := secrets.resolve("secret", sec.SecretId)
		if err != nil {
			return c, err
		}
		ref := FileRef{SecretID: id, SecretName: deref(sec.SecretName)}
		ref.File.Name, ref.File.UID, ref.File.GID, ref.File.Mode = sec.FileName, or(sec.FileUid, "0"), or(sec.FileGid, "0"), uint32(or(sec.FileMode, 0o444))
		c.Secrets = append(c.Secrets, ref)
	}
	for _, cf := range cs.Configs {
		id, err := configs.resolve("config", cf.ConfigId)
		if err != nil {
			return c, err
		}
		ref := FileRef{ConfigID: id, ConfigName: deref(cf.ConfigName)}
		ref.File.Name, ref.File.UID, ref.File.GID, ref.File.Mode = cf.FileName, or(cf.FileUid, "0"), or(cf.FileGid, "0"), uint32(or(cf.FileMode, 0o444))
		c.Configs = append(c.Configs, ref)
	}
	return c, nil
}

func mounts(ms []docker.ServiceTaskSpecContainerSpecMount) []Mount {
	var out []Mount
	for _, m := range ms {
		mt := Mount{Type: m.Type, Source: deref(m.Source), Target: m.Target, ReadOnly: deref(m.ReadOnly)}
		if m.BindOptions != nil {
			mt.BindOptions = &struct{ Propagation string }{deref(m.BindOptions.Propagation)}
		}
		if v := m.VolumeOptions; v != nil {
			mt.VolumeOptions = &VolumeOptions{
				NoCopy: deref(v.NoCopy),
				Labels: labelMap(v.Labels, func(l docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabel) (string, string) {
					return l.Label, l.Value
				}),
			}
			if v.DriverName != nil {
				mt.VolumeOptions.DriverConfig = &Driver{Name: *v.DriverName, Options: v.DriverOptions}
			}
		}
		if t := m.TmpfsOptions; t != nil {
			mt.TmpfsOptions = &TmpfsOptions{SizeBytes: int64(deref(t.SizeBytes)), Mode: uint32(deref(t.Mode))}
		}
		out = append(out, mt)
	}
	return out
}

func healthcheck(h *docker.ServiceTaskSpecContainerSpecHealthcheck) (*Healthcheck, error) {
	if h == nil {
		return nil, nil
	}
	hc := &Healthcheck{Test: h.Tests, Retries: deref(h.Retries)}
	for _, d := range []struct {
		in  *string
		out *int64
		key string
	}{{h.Interval, &hc.Interval, "interval"}, {h.Timeout, &hc.Timeout, "timeout"}, {h.StartPeriod, &hc.StartPeriod, "startPeriod"}} {
		var err error
		if *d.out, err = dur(d.in); err != nil {
			return nil, fmt.Errorf("healthcheck.%s: %w", d.key, err)
		}
	}
	return hc, nil
}

func updateConfig(u *docker.ServiceUpdateConfig) (*UpdateConfig, error) {
	if u == nil {
		return nil, nil
	}
	out := &UpdateConfig{Parallelism: uint64(or(u.Parallelism, 1)), FailureAction: deref(u.FailureAction), Order: deref(u.Order)}
	var err error
	if out.Delay, err = dur(u.Delay); err != nil {
		return nil, fmt.Errorf("delay: %w", err)
	}
	if out.Monitor, err = dur(u.Monitor); err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	if u.MaxFailureRatio != nil && *u.MaxFailureRatio != "" {
		if out.MaxFailureRatio, err = strconv.ParseFloat(*u.MaxFailureRatio, 64); err != nil {
			return nil, fmt.Errorf("maxFailureRatio: %w", err)
		}
	}
	return out, nil
}

func dur(s *string) (int64, error) {
	if s == nil || *s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(*s)
	return int64(d), err
}

func durPtr(s *string) (*int64, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	d, err := dur(s)
	return &d, err
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func or[T comparable](p *T, def T) T {
	var zero T
	if p == nil || *p == zero {
		return def
	}
	return *p
}

func labelMap[L any](ls []L, kv func(L) (string, string)) map[string]string {
	if len(ls) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, l := range ls {
		k, v := kv(l)
		m[k] = v
	}
	return m
}

func optsMap(opts []string) map[string]string {
	if len(opts) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		m[k] = v
	}
	return m
}
