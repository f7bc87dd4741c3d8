// Package swarmtest runs the service stack that the Pulumi program declares
// on a real local Docker Swarm engine: it translates the pulumi-docker
// resources recorded under mocks into Docker Engine API objects (translate.go),
// builds the images this repository owns (images.go) and talks to the engine
// over its Unix socket with plain JSON (this file), so the project does not
// depend on the Docker client library.
package swarmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the Engine API version the requests are written against
// (Docker 20.10); newer engines accept it.
const APIVersion = "v1.41"

// Engine is a minimal Docker Engine API client over a Unix socket.
type Engine struct {
	Socket string
	hc     *http.Client
}

// NewEngine returns a client for the socket in DOCKER_HOST (unix:// only) or
// /var/run/docker.sock.
func NewEngine() *Engine {
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	return NewEngineAt(sock)
}

// NewEngineAt returns a client for the engine listening on sock.
func NewEngineAt(sock string) *Engine {
	return &Engine{Socket: sock, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// APIError is a non-2xx answer of the engine.
type APIError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("docker %s %s: %d: %s", e.Method, e.Path, e.Status, e.Message)
}

// IsNotFound reports whether err is the engine's 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// Do sends a JSON request and decodes a JSON answer into out (if non-nil).
func (e *Engine) Do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("docker %s %s: encoding request: %w", method, path, err)
		}
		body = bytes.NewReader(raw)
	}
	u := "http://docker/" + APIVersion + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return fmt.Errorf("docker %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("docker %s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var m struct{ Message string }
		if json.Unmarshal(raw, &m) != nil || m.Message == "" {
			m.Message = strings.TrimSpace(string(raw))
		}
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Message: m.Message}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("docker %s %s: decoding answer: %w", method, path, err)
		}
	}
	return nil
}

// Info is the subset of GET /info the harness reads.
type Info struct {
	Name     string
	NCPU     int
	MemTotal int64
	Swarm    struct {
		NodeID           string
		LocalNodeState   string // inactive, pending, active, error, locked
		ControlAvailable bool
		Nodes            int
	}
}

// Info returns the engine's /info.
func (e *Engine) Info(ctx context.Context) (Info, error) {
	var i Info
	err := e.Do(ctx, http.MethodGet, "/info", nil, nil, &i)
	return i, err
}

// SwarmInit makes this engine a single-node swarm manager advertising addr.
func (e *Engine) SwarmInit(ctx context.Context, addr string) error {
	return e.Do(ctx, http.MethodPost, "/swarm/init", nil, map[string]any{
		"ListenAddr":    addr + ":2377",
		"AdvertiseAddr": addr,
	}, nil)
}

// SwarmLeave leaves the swarm (force: also as the last manager).
func (e *Engine) SwarmLeave(ctx context.Context) error {
	return e.Do(ctx, http.MethodPost, "/swarm/leave", url.Values{"force": {"true"}}, nil, nil)
}

// Node is the subset of a swarm node the harness reads and writes.
type Node struct {
	ID      string
	Version struct{ Index uint64 }
	Spec    map[string]any
	// Description.Hostname is what node.hostname constraints match.
	Description struct{ Hostname string }
}

// NodeLabels returns the node's spec labels.
func (n Node) NodeLabels() map[string]string {
	out := map[string]string{}
	if l, ok := n.Spec["Labels"].(map[string]any); ok {
		for k, v := range l {
			out[k], _ = v.(string)
		}
	}
	return out
}

// Node inspects one node.
func (e *Engine) Node(ctx context.Context, id string) (Node, error) {
	var n Node
	err := e.Do(ctx, http.MethodGet, "/nodes/"+id, nil, nil, &n)
	return n, err
}

// SetNodeLabels replaces the node's labels (the rest of its spec is kept).
func (e *Engine) SetNodeLabels(ctx context.Context, id string, labels map[string]string) error {
	n, err := e.Node(ctx, id)
	if err != nil {
		return err
	}
	spec := n.Spec
	if spec == nil {
		spec = map[string]any{}
	}
	spec["Labels"] = labels
	return e.Do(ctx, http.MethodPost, "/nodes/"+id+"/update",
		url.Values{"version": {fmt.Sprint(n.Version.Index)}}, spec, nil)
}

// CreateNetwork creates a network and returns its ID.
func (e *Engine) CreateNetwork(ctx context.Context, spec NetworkSpec) (string, error) {
	var out struct{ ID string }
	err := e.Do(ctx, http.MethodPost, "/networks/create", nil, spec, &out)
	return out.ID, err
}

// RemoveNetwork removes a network; a missing one is not an error.
func (e *Engine) RemoveNetwork(ctx context.Context, id string) error {
	err := e.Do(ctx, http.MethodDelete, "/networks/"+id, nil, nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// NetworkInfo is the subset of a network inspect the harness reads.
type NetworkInfo struct {
	ID      string
	Name    string
	Driver  string
	Scope   string
	Options map[string]string
}

// Network inspects a network.
func (e *Engine) Network(ctx context.Context, id string) (NetworkInfo, error) {
	var n NetworkInfo
	err := e.Do(ctx, http.MethodGet, "/networks/"+id, nil, nil, &n)
	return n, err
}

// CreateSecret creates a swarm secret and returns its ID.
func (e *Engine) CreateSecret(ctx context.Context, spec SecretSpec) (string, error) {
	var out struct{ ID string }
	err := e.Do(ctx, http.MethodPost, "/secrets/create", nil, spec, &out)
	return out.ID, err
}

// RemoveSecret removes a secret; a missing one is not an error.
func (e *Engine) RemoveSecret(ctx context.Context, id string) error {
	err := e.Do(ctx, http.MethodDelete, "/secrets/"+id, nil, nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// CreateService creates a service and returns its ID.
func (e *Engine) CreateService(ctx context.Context, spec ServiceSpec) (string, error) {
	var out struct{ ID string }
	err := e.Do(ctx, http.MethodPost, "/services/create", nil, spec, &out)
	return out.ID, err
}

// RemoveService removes a service; a missing one is not an error.
func (e *Engine) RemoveService(ctx context.Context, id string) error {
	err := e.Do(ctx, http.MethodDelete, "/services/"+id, nil, nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// ServiceInfo is the subset of a service inspect the harness reads.
type ServiceInfo struct {
	ID   string
	Spec ServiceSpec
}

// Service inspects a service.
func (e *Engine) Service(ctx context.Context, id string) (ServiceInfo, error) {
	var s ServiceInfo
	err := e.Do(ctx, http.MethodGet, "/services/"+id, nil, nil, &s)
	return s, err
}

// Task is the subset of a swarm task the harness reads.
type Task struct {
	ID           string
	ServiceID    string
	NodeID       string
	DesiredState string
	Status       struct {
		State           string
		Message         string
		Err             string
		ContainerStatus struct{ ContainerID string }
	}
}

// Tasks lists the tasks of one service.
func (e *Engine) Tasks(ctx context.Context, serviceID string) ([]Task, error) {
	f, _ := json.Marshal(map[string][]string{"service": {serviceID}})
	var ts []Task
	err := e.Do(ctx, http.MethodGet, "/tasks", url.Values{"filters": {string(f)}}, nil, &ts)
	return ts, err
}

// ContainerHealth returns a container's health status ("" when it declares
// no health check).
func (e *Engine) ContainerHealth(ctx context.Context, id string) (string, error) {
	var c struct {
		State struct {
			Health *struct{ Status string }
		}
	}
	if err := e.Do(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &c); err != nil {
		return "", err
	}
	if c.State.Health == nil {
		return "", nil
	}
	return c.State.Health.Status, nil
}

// ContainerPID returns the host PID of a running container's main process.
func (e *Engine) ContainerPID(ctx context.Context, id string) (int, error) {
	var c struct{ State struct{ Pid int } }
	err := e.Do(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &c)
	return c.State.Pid, err
}

// ServiceLogs returns the last lines of a service's logs (for failure
// messages; the engine multiplexes stdout/stderr with 8-byte frame headers,
// which are stripped).
func (e *Engine) ServiceLogs(ctx context.Context, id string, tail int) string {
	u := "http://docker/" + APIVersion + "/services/" + id + "/logs?" + url.Values{
		"stdout": {"1"}, "stderr": {"1"}, "tail": {fmt.Sprint(tail)},
	}.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out bytes.Buffer
	for len(raw) >= 8 {
		n := int(raw[4])<<24 | int(raw[5])<<16 | int(raw[6])<<8 | int(raw[7])
		raw = raw[8:]
		if n > len(raw) {
			n = len(raw)
		}
		out.Write(raw[:n])
		raw = raw[n:]
	}
	return out.String()
}

// UpdateService replaces a service's spec, as `docker service update`
// does: the spec is read and written back at the version read.
func (e *Engine) UpdateService(ctx context.Context, id string, change func(spec map[string]any)) error {
	var s struct {
		Version struct{ Index uint64 }
		Spec    map[string]any
	}
	if err := e.Do(ctx, http.MethodGet, "/services/"+id, nil, nil, &s); err != nil {
		return err
	}
	change(s.Spec)
	return e.Do(ctx, http.MethodPost, "/services/"+id+"/update", url.Values{"version": {strconv.FormatUint(s.Version.Index, 10)}}, s.Spec, nil)
}

// List lists the engine's objects of a kind ("services", "networks",
// "secrets", "configs", "volumes") whose labels include label=value.
func (e *Engine) List(ctx context.Context, kind, label, value string) ([]string, error) {
	f, _ := json.Marshal(map[string][]string{"label": {label + "=" + value}})
	if kind == "volumes" {
		var out struct{ Volumes []struct{ Name string } }
		err := e.Do(ctx, http.MethodGet, "/volumes", url.Values{"filters": {string(f)}}, nil, &out)
		var names []string
		for _, v := range out.Volumes {
			names = append(names, v.Name)
		}
		return names, err
	}
	var out []struct {
		ID   string
		Name string
		Spec struct{ Name string }
	}
	err := e.Do(ctx, http.MethodGet, "/"+kind, url.Values{"filters": {string(f)}}, nil, &out)
	var names []string
	for _, o := range out {
		names = append(names, o.Name+o.Spec.Name)
	}
	return names, err
}
