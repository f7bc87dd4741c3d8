package pulumitest

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Resource is one resource the program registered (or read) under the mocks.
type Resource struct {
	Type     string // type token, e.g. gcp:compute/instance:Instance
	Name     string // logical Pulumi name
	URN      string
	ID       string
	Custom   bool // false for component resources
	Read     bool // registered through a Get/Read, not a RegisterResource
	Provider string
	Parent   string // parent URN (the root stack URN for top-level resources)

	Inputs  resource.PropertyMap // as registered (secrets stay wrapped)
	Outputs resource.PropertyMap // what the mock returned

	// Resource options, from the RegisterResource RPC.
	Dependencies            []string            // URNs from DependsOn and input dependencies
	PropertyDependencies    map[string][]string // input property -> URNs it depends on
	Protect                 bool
	DeletedWith             string
	AdditionalSecretOutputs []string
	IgnoreChanges           []string
	ReplaceOnChanges        []string
	DeleteBeforeReplace     bool
	RetainOnDelete          bool
	Aliases                 int // number of aliases declared
}

// Call is one provider function invocation (an Invoke, e.g. gcp.compute.GetImage).
type Call struct {
	Token    string
	Args     resource.PropertyMap
	Provider string
}

// ResourceHook adjusts the outputs of resources of one type. It receives the
// mock's default outputs (inputs plus plausible computed values) and returns
// the outputs to use.
type ResourceHook func(args pulumi.MockResourceArgs, outputs resource.PropertyMap) (resource.PropertyMap, error)

// CallHook answers one provider function.
type CallHook func(args pulumi.MockCallArgs) (resource.PropertyMap, error)

// Mocks is a recording pulumi.MockResourceMonitor. The zero value is not
// usable; use NewMocks.
type Mocks struct {
	// Preview runs the program as `pulumi preview` (ctx.DryRun() == true).
	Preview bool

	mu        sync.Mutex
	project   string
	stack     string
	resources []Resource
	calls     []Call
	resHooks  map[string]ResourceHook
	callHooks map[string]CallHook
	extIPs    int
	intIPs    int
}

// NewMocks returns an empty recorder with the default fake outputs.
func NewMocks() *Mocks {
	return &Mocks{resHooks: map[string]ResourceHook{}, callHooks: map[string]CallHook{}}
}

// OnResource registers a hook for resources of type token ("*" for all types,
// applied after the type-specific one).
func (m *Mocks) OnResource(token string, hook ResourceHook) *Mocks {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resHooks[token] = hook
	return m
}

// OnCall registers the answer of a provider function token (e.g.
// "gcp:compute/getImage:getImage"). Unhooked calls are recorded and answer an
// empty object.
func (m *Mocks) OnCall(token string, hook CallHook) *Mocks {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.callHooks[token] = hook
	return m
}

// NewResource implements pulumi.MockResourceMonitor.
func (m *Mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	id, outs := m.defaults(args)
	hook, anyHook := m.resHooks[args.TypeToken], m.resHooks["*"]
	m.mu.Unlock()

	var err error
	if hook != nil {
		if outs, err = hook(args, outs); err != nil {
			return "", nil, err
		}
	}
	if anyHook != nil {
		if outs, err = anyHook(args, outs); err != nil {
			return "", nil, err
		}
	}
	if args.ID != "" {
		id = args.ID
	}

	r := Resource{
		Type:     args.TypeToken,
		Name:     args.Name,
		ID:       id,
		Custom:   args.Custom,
		Provider: args.Provider,
		Inputs:   args.Inputs,
		Outputs:  outs,
	}
	if rpc := args.RegisterRPC; rpc != nil {
		r.Parent = rpc.GetParent()
		r.Dependencies = append([]string(nil), rpc.GetDependencies()...)
		r.PropertyDependencies = map[string][]string{}
		for k, v := range rpc.GetPropertyDependencies() {
			r.PropertyDependencies[k] = append([]string(nil), v.GetUrns()...)
		}
		r.Protect = rpc.GetProtect()
		r.DeletedWith = rpc.GetDeletedWith()
		r.AdditionalSecretOutputs = append([]string(nil), rpc.GetAdditionalSecretOutputs()...)
		r.IgnoreChanges = append([]string(nil), rpc.GetIgnoreChanges()...)
		r.ReplaceOnChanges = append([]string(nil), rpc.GetReplaceOnChanges()...)
		r.DeleteBeforeReplace = rpc.GetDeleteBeforeReplace()
		r.RetainOnDelete = rpc.GetRetainOnDelete()
		r.Aliases = len(rpc.GetAliases()) + len(rpc.GetAliasURNs())
	} else if rpc := args.ReadRPC; rpc != nil {
		r.Read = true
		r.Parent = rpc.GetParent()
		r.Dependencies = append([]string(nil), rpc.GetDependencies()...)
	}

	m.mu.Lock()
	r.URN = m.urn(r.Parent, r.Type, r.Name)
	m.resources = append(m.resources, r)
	m.mu.Unlock()
	return id, outs, nil
}

// Call implements pulumi.MockResourceMonitor (provider function invokes).
func (m *Mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	m.calls = append(m.calls, Call{Token: args.Token, Args: args.Args, Provider: args.Provider})
	hook := m.callHooks[args.Token]
	m.mu.Unlock()
	if hook != nil {
		return hook(args)
	}
	return resource.PropertyMap{}, nil
}

// MethodCall implements pulumi.MockResourceMonitorWithMethodCall (component
// methods); recorded like Call, answered by OnCall hooks.
func (m *Mocks) MethodCall(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return m.Call(args)
}

// urn mirrors the SDK mock monitor's URN scheme so recorded URNs match the
// URNs the program sees (parents, dependencies). Call with m.mu held.
func (m *Mocks) urn(parent, typ, name string) string {
	parentType := tokens.Type("")
	if p := resource.URN(parent); p != "" && p.QualifiedType() != resource.RootStackType {
		parentType = p.QualifiedType()
	}
	return string(resource.NewURN(tokens.QName(m.stack), tokens.PackageName(m.project), parentType,
		tokens.Type(typ), name))
}

// StackURN is the URN of the root stack resource (the parent of unparented resources).
func (m *Mocks) StackURN() string {
	return string(resource.DefaultRootStackURN(tokens.QName(m.stack), tokens.PackageName(m.project)))
}

// Resources returns every registered resource in registration order.
func (m *Mocks) Resources() []Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Resource(nil), m.resources...)
}

// Calls returns every provider function invocation in order.
func (m *Mocks) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Call(nil), m.calls...)
}

// ByType returns the resources of one type token, sorted by name.
func (m *Mocks) ByType(token string) []Resource {
	var out []Resource
	for _, r := range m.Resources() {
		if r.Type == token {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get finds a resource by type token and logical name.
func (m *Mocks) Get(token, name string) (Resource, bool) {
	for _, r := range m.Resources() {
		if r.Type == token && r.Name == name {
			return r, true
		}
	}
	return Resource{}, false
}

// MustGet is Get that fails the test when the resource is missing, listing
// what was registered.
func (m *Mocks) MustGet(t testing.TB, token, name string) Resource {
	t.Helper()
	r, ok := m.Get(token, name)
	if !ok {
		var names []string
		for _, r := range m.ByType(token) {
			names = append(names, r.Name)
		}
		t.Fatalf("no %s named %q registered; have %v", token, name, names)
	}
	return r
}

// ByURN finds a resource by URN.
func (m *Mocks) ByURN(urn string) (Resource, bool) {
	for _, r := range m.Resources() {
		if r.URN == urn {
			return r, true
		}
	}
	return Resource{}, false
}

// Children returns the resources whose parent is urn.
func (m *Mocks) Children(urn string) []Resource {
	var out []Resource
	for _, r := range m.Resources() {
		if r.Parent == urn {
			out = append(out, r)
		}
	}
	return out
}

// Ancestors returns the URNs from r's parent up to (not including) the stack.
func (m *Mocks) Ancestors(r Resource) []string {
	var out []string
	for p := r.Parent; p != "" && p != m.StackURN(); {
		out = append(out, p)
		pr, ok := m.ByURN(p)
		if !ok {
			break
		}
		p = pr.Parent
	}
	return out
}

// DependsOn reports whether r lists dep's URN among its dependencies (resource
// or property dependencies).
func (r Resource) DependsOn(urn string) bool {
	for _, d := range r.Dependencies {
		if d == urn {
			return true
		}
	}
	for _, ds := range r.PropertyDependencies {
		for _, d := range ds {
			if d == urn {
				return true
			}
		}
	}
	return false
}

// Input returns the plain value at a property path of the inputs
// ("networkInterfaces[0].accessConfigs[0].natIp", "labels.role"); secrets
// and outputs are unwrapped, unknowns are nil.
func (r Resource) Input(path string) (any, bool) { return get(r.Inputs, path) }

// Output is Input for the mock's outputs.
func (r Resource) Output(path string) (any, bool) { return get(r.Outputs, path) }

// InputString is Input formatted as a string ("" when absent).
func (r Resource) InputString(path string) string {
	v, ok := r.Input(path)
	if !ok || v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// OutputString is Output formatted as a string ("" when absent).
func (r Resource) OutputString(path string) string {
	v, ok := r.Output(path)
	if !ok || v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// IsSecretInput reports whether the input at path (or any value containing
// it) was registered as a secret.
func (r Resource) IsSecretInput(path string) bool {
	p, err := resource.ParsePropertyPath(path)
	if err != nil {
		return false
	}
	v := resource.NewObjectProperty(r.Inputs)
	for _, key := range p {
		if isSecret(v) {
			return true
		}
		v = unwrap(v)
		switch {
		case v.IsArray():
			i, ok := key.(int)
			if !ok || i < 0 || i >= len(v.ArrayValue()) {
				return false
			}
			v = v.ArrayValue()[i]
		case v.IsObject():
			k, ok := key.(string)
			if !ok {
				return false
			}
			if v, ok = v.ObjectValue()[resource.PropertyKey(k)]; !ok {
				return false
			}
		default:
			return false
		}
	}
	return isSecret(v)
}

// InputMap returns all inputs as plain Go values (secrets unwrapped).
func (r Resource) InputMap() map[string]any {
	return Plain(resource.NewObjectProperty(r.Inputs)).(map[string]any)
}

func isSecret(v resource.PropertyValue) bool {
	return v.IsSecret() || (v.IsOutput() && v.OutputValue().Secret)
}

func unwrap(v resource.PropertyValue) resource.PropertyValue {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput():
			v = v.OutputValue().Element
		default:
			return v
		}
	}
}

func get(m resource.PropertyMap, path string) (any, bool) {
	p, err := resource.ParsePropertyPath(path)
	if err != nil {
		return nil, false
	}
	v, ok := p.Get(deepUnwrap(resource.NewObjectProperty(m)))
	if !ok {
		return nil, false
	}
	return Plain(v), true
}

func deepUnwrap(v resource.PropertyValue) resource.PropertyValue {
	v = unwrap(v)
	switch {
	case v.IsArray():
		arr := make([]resource.PropertyValue, len(v.ArrayValue()))
		for i, e := range v.ArrayValue() {
			arr[i] = deepUnwrap(e)
		}
		return resource.NewArrayProperty(arr)
	case v.IsObject():
		obj := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			obj[k] = deepUnwrap(e)
		}
		return resource.NewObjectProperty(obj)
	}
	return v
}

// Plain converts a property value to plain Go values: strings, float64,
// bool, []any, map[string]any; secrets/outputs unwrapped; unknowns nil;
// resource references as their URN.
func Plain(v resource.PropertyValue) any {
	v = unwrap(v)
	switch {
	case v.IsNull(), v.IsComputed():
		return nil
	case v.IsBool():
		return v.BoolValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsString():
		return v.StringValue()
	case v.IsArray():
		out := make([]any, 0, len(v.ArrayValue()))
		for _, e := range v.ArrayValue() {
			out = append(out, Plain(e))
		}
		return out
	case v.IsObject():
		out := map[string]any{}
		for k, e := range v.ObjectValue() {
			out[string(k)] = Plain(e)
		}
		return out
	case v.IsResourceReference():
		return string(v.ResourceReferenceValue().URN)
	}
	return v.V
}

// nextAddress is a fresh mock address: internal ones in 10.250.0.0/16,
// external ones in 203.0.113.0/24 (TEST-NET-3), then 198.51.100.0/24.
// Call with m.mu held.
func (m *Mocks) nextAddress(internal bool) string {
	if internal {
		m.intIPs++
		return fmt.Sprintf("10.250.%d.%d", m.intIPs/250, m.intIPs%250+2)
	}
	m.extIPs++
	if m.extIPs > 250 {
		return fmt.Sprintf("198.51.100.%d", m.extIPs-250)
	}
	return fmt.Sprintf("203.0.113.%d", m.extIPs)
}

// addressInterfaces gives every network interface of an instance an
// internal IP if none was asked for. Call with m.mu held.
func (m *Mocks) addressInterfaces(outs resource.PropertyMap) {
	nis, ok := outs["networkInterfaces"]
	if !ok || !unwrap(nis).IsArray() {
		return
	}
	arr := unwrap(nis).ArrayValue()
	for i, ni := range arr {
		ni = unwrap(ni)
		if !ni.IsObject() {
			continue
		}
		obj := ni.ObjectValue().Copy()
		if ip, ok := obj["networkIp"]; !ok || !unwrap(ip).IsString() || unwrap(ip).StringValue() == "" {
			obj["networkIp"] = resource.NewProperty(m.nextAddress(true))
		}
		arr[i] = resource.NewObjectProperty(obj)
	}
	outs["networkInterfaces"] = resource.NewArrayProperty(arr)
}

// defaults computes the id and plausible outputs for a resource: its inputs,
// plus the computed attributes dependants usually read. Call with m.mu held.
func (m *Mocks) defaults(args pulumi.MockResourceArgs) (string, resource.PropertyMap) {
	outs := args.Inputs.Copy()
	if outs == nil {
		outs = resource.PropertyMap{}
	}
	str := func(k string) string {
		v, ok := outs[resource.PropertyKey(k)]
		if !ok {
			return ""
		}
		v = unwrap(v)
		if v.IsString() {
			return v.StringValue()
		}
		return ""
	}
	set := func(k string, v any) { outs[resource.PropertyKey(k)] = resource.NewPropertyValue(v) }
	name := str("name")
	if name == "" && strings.HasPrefix(args.TypeToken, "gcp:") {
		name = args.Name
		set("name", name)
	}
	project := str("project")
	if project == "" {
		project = "mock-project"
	}
	id := args.Name + "-id"
	selfLink := func(scope string) string {
		return fmt.Sprintf("https://www.googleapis.com/compute/v1/projects/%s/%s/%s", project, scope, name)
	}

	switch args.TypeToken {
	case "gcp:compute/address:Address":
		if str("address") == "" {
			set("address", m.nextAddress(str("addressType") == "INTERNAL"))
		}
		set("selfLink", selfLink("regions/"+str("region")+"/addresses"))
		id = fmt.Sprintf("projects/%s/regions/%s/addresses/%s", project, str("region"), name)
	case "gcp:compute/network:Network":
		set("selfLink", selfLink("global/networks"))
		id = fmt.Sprintf("projects/%s/global/networks/%s", project, name)
	case "gcp:compute/subnetwork:Subnetwork":
		set("selfLink", selfLink("regions/"+str("region")+"/subnetworks"))
		id = fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, str("region"), name)
	case "gcp:compute/firewall:Firewall":
		set("selfLink", selfLink("global/firewalls"))
		id = fmt.Sprintf("projects/%s/global/firewalls/%s", project, name)
	case "gcp:compute/instance:Instance":
		set("selfLink", selfLink("zones/"+str("zone")+"/instances"))
		set("instanceId", fmt.Sprintf("%d", 1000+len(m.resources)))
		id = fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, str("zone"), name)
		m.addressInterfaces(outs)
	case "gcp:serviceaccount/account:Account":
		email := fmt.Sprintf("%s@%s.iam.gserviceaccount.com", str("accountId"), project)
		set("email", email)
		set("member", "serviceAccount:"+email)
		set("name", fmt.Sprintf("projects/%s/serviceAccounts/%s", project, email))
		id = fmt.Sprintf("projects/%s/serviceAccounts/%s", project, email)
	case "cloudflare:index/record:Record":
		set("hostname", str("name"))
		id = "cf-" + args.Name
	case "tls:index/privateKey:PrivateKey":
		set("publicKeyOpenssh", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPulumitestPulumitestPulumitestPulumitest0 "+args.Name+"\n")
		set("publicKeyPem", "-----BEGIN PUBLIC KEY-----\nMOCK\n-----END PUBLIC KEY-----\n")
		set("privateKeyPem", "-----BEGIN PRIVATE KEY-----\nMOCK\n-----END PRIVATE KEY-----\n")
		set("privateKeyOpenssh", "-----BEGIN OPENSSH PRIVATE KEY-----\nMOCK\n-----END OPENSSH PRIVATE KEY-----\n")
		set("publicKeyFingerprintSha256", "SHA256:mock")
	case "tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert":
		set("certPem", "-----BEGIN CERTIFICATE-----\nMOCK "+args.Name+"\n-----END CERTIFICATE-----\n")
	case "random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString":
		set("result", "mock-random-"+args.Name)
	case "command:remote:Command", "command:local:Command":
		if _, ok := outs["stdout"]; !ok {
			set("stdout", "")
		}
		if _, ok := outs["stderr"]; !ok {
			set("stderr", "")
		}
	}
	if !args.Custom {
		id = "" // components have no id
	}
	return id, outs
}
