package swarmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// OwnerLabel marks every object the harness creates, so a later run can
// remove what an interrupted run (killed before its cleanups ran) left.
const OwnerLabel = "io.jbcalling.platform.swarmtest"

// Cluster is a local single-node swarm under test.
type Cluster struct {
	E      *Engine
	NodeID string
	// Created reports whether this run initialised the swarm (and so leaves
	// it at the end).
	Created bool
}

// Open returns the local swarm, initialising a single-node one advertising
// 127.0.0.1 when the engine is in none; it skips t, saying why, when no
// engine answers or swarm mode cannot be used. Cleanup leaves the swarm
// only if Open created it; node labels it changes are restored.
func Open(t testing.TB) *Cluster {
	t.Helper()
	e := NewEngine()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := os.Stat(e.Socket); err != nil {
		t.Skipf("no Docker engine: %s: %v", e.Socket, err)
	}
	info, err := e.Info(ctx)
	if err != nil {
		t.Skipf("Docker engine at %s does not answer: %v", e.Socket, err)
	}
	c := &Cluster{E: e}
	switch info.Swarm.LocalNodeState {
	case "active":
		if !info.Swarm.ControlAvailable {
			t.Skipf("this engine is a swarm worker, not a manager: cannot create services")
		}
		t.Logf("reusing the engine's active swarm (it will not be left)")
	case "inactive":
		if err := e.SwarmInit(ctx, "127.0.0.1"); err != nil {
			t.Skipf("swarm mode cannot be used on this engine: swarm init: %v", err)
		}
		c.Created = true
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := e.SwarmLeave(ctx); err != nil {
				t.Errorf("leaving the swarm this test created: %v", err)
			}
		})
		if info, err = e.Info(ctx); err != nil {
			t.Fatalf("after swarm init: %v", err)
		}
	default:
		t.Skipf("swarm is in state %q on this engine; not touching it", info.Swarm.LocalNodeState)
	}
	c.NodeID = info.Swarm.NodeID
	c.removeLeftovers(t)
	return c
}

// removeLeftovers deletes services, secrets and networks carrying
// OwnerLabel: an interrupted earlier run's objects would clash by name.
func (c *Cluster) removeLeftovers(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, _ := json.Marshal(map[string][]string{"label": {OwnerLabel}})
	q := url.Values{"filters": {string(f)}}
	var objs []struct{ ID string }
	for _, kind := range []string{"services", "secrets", "configs", "networks"} {
		objs = objs[:0]
		if err := c.E.Do(ctx, http.MethodGet, "/"+kind, q, nil, &objs); err != nil {
			t.Fatalf("listing leftover %s: %v", kind, err)
		}
		for _, o := range objs {
			t.Logf("removing leftover %s %s from an earlier run", kind, o.ID)
			if err := c.E.Do(ctx, http.MethodDelete, "/"+kind+"/"+o.ID, nil, nil, nil); err != nil && !IsNotFound(err) {
				t.Fatalf("removing leftover %s %s: %v", kind, o.ID, err)
			}
		}
		if kind == "services" && len(objs) > 0 {
			waitNoContainers(ctx, c.E)
		}
	}
}

// waitNoContainers waits until no container of a harness service is left
// (networks cannot be removed while tasks are still attached).
func waitNoContainers(ctx context.Context, e *Engine) {
	f, _ := json.Marshal(map[string][]string{"label": {"com.docker.swarm.service.id"}})
	for ctx.Err() == nil {
		var cs []struct{ ID string }
		if err := e.Do(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(f)}}, nil, &cs); err != nil || len(cs) == 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// SetNodeLabels sets the local node's labels for the test and restores the
// previous ones at cleanup.
func (c *Cluster) SetNodeLabels(t testing.TB, labels map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.E.Node(ctx, c.NodeID)
	if err != nil {
		t.Fatalf("inspecting the local node: %v", err)
	}
	prev := n.NodeLabels()
	if err := c.E.SetNodeLabels(ctx, c.NodeID, labels); err != nil {
		t.Fatalf("labelling the local node: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.E.SetNodeLabels(ctx, c.NodeID, prev); err != nil && !c.Created {
			t.Errorf("restoring the local node's labels: %v", err)
		}
	})
}

// CreateNetwork creates a network, removed at cleanup.
func (c *Cluster) CreateNetwork(t testing.TB, spec NetworkSpec) string {
	t.Helper()
	spec.Labels = withOwner(spec.Labels)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := c.E.CreateNetwork(ctx, spec)
	if err != nil {
		t.Fatalf("creating network %s: %v", spec.Name, err)
	}
	t.Cleanup(func() {
		// Tasks detach asynchronously after their service is removed.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		for ctx.Err() == nil {
			if err = c.E.RemoveNetwork(ctx, id); err == nil {
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("removing network %s: %v", spec.Name, err)
	})
	return id
}

// CreateSecret creates a secret, removed at cleanup.
func (c *Cluster) CreateSecret(t testing.TB, spec SecretSpec) string {
	t.Helper()
	spec.Labels = withOwner(spec.Labels)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.E.CreateSecret(ctx, spec)
	if err != nil {
		t.Fatalf("creating secret %s: %v", spec.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		for ctx.Err() == nil {
			if err = c.E.RemoveSecret(ctx, id); err == nil {
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("removing secret %s: %v", spec.Name, err)
	})
	return id
}

// CreateConfig creates a docker config, removed at cleanup.
func (c *Cluster) CreateConfig(t testing.TB, spec SecretSpec) string {
	t.Helper()
	spec.Labels = withOwner(spec.Labels)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out struct{ ID string }
	if err := c.E.Do(ctx, http.MethodPost, "/configs/create", nil, spec, &out); err != nil {
		t.Fatalf("creating config %s: %v", spec.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		for ctx.Err() == nil {
			if err = c.E.Do(ctx, http.MethodDelete, "/configs/"+out.ID, nil, nil, nil); err == nil || IsNotFound(err) {
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("removing config %s: %v", spec.Name, err)
	})
	return out.ID
}

// removeVolumeAtCleanup removes a named volume a service mount will create,
// unless it exists already. Registered before the service, so it runs after
// the service and its containers are gone.
func (c *Cluster) removeVolumeAtCleanup(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.E.Do(ctx, http.MethodGet, "/volumes/"+name, nil, nil, nil); err == nil {
		t.Logf("volume %s exists already: it will be kept", name)
		return
	} else if !IsNotFound(err) {
		t.Fatalf("inspecting volume %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var err error
		for ctx.Err() == nil {
			if err = c.E.Do(ctx, http.MethodDelete, "/volumes/"+name, nil, nil, nil); err == nil || IsNotFound(err) {
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("removing volume %s: %v", name, err)
	})
}

// CreateService creates a service, removed at cleanup (before the networks
// and secrets it uses, which were created first and so clean up later).
func (c *Cluster) CreateService(t testing.TB, spec ServiceSpec) string {
	t.Helper()
	spec.Labels = withOwner(spec.Labels)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := c.E.CreateService(ctx, spec)
	if err != nil {
		raw, _ := json.MarshalIndent(spec, "", "  ")
		t.Fatalf("creating service %s: %v\nspec: %s", spec.Name, err, raw)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.E.RemoveService(ctx, id); err != nil {
			t.Errorf("removing service %s: %v", spec.Name, err)
		}
		waitNoTasks(ctx, c.E, id)
	})
	return id
}

func waitNoTasks(ctx context.Context, e *Engine, serviceID string) {
	f, _ := json.Marshal(map[string][]string{"label": {"com.docker.swarm.service.id=" + serviceID}})
	for ctx.Err() == nil {
		var cs []struct{ ID string }
		if err := e.Do(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(f)}}, nil, &cs); err != nil || len(cs) == 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// WaitRunning polls until want tasks of the service are running (and, for
// containers with a health check, healthy), or fails with the tasks' states
// and the service's last log lines.
func (c *Cluster) WaitRunning(t testing.TB, name, id string, want int, timeout time.Duration) []Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last []Task
	for {
		ts, err := c.E.Tasks(ctx, id)
		if err == nil {
			last = ts
			var ready []Task
			for _, tk := range ts {
				if tk.DesiredState != "running" || tk.Status.State != "running" {
					continue
				}
				// Swarm reports a task running once its health check passed;
				// the container's own status double-checks it where this
				// engine runs it (on other nodes it is not found here).
				h, err := c.E.ContainerHealth(ctx, tk.Status.ContainerStatus.ContainerID)
				if (err == nil && (h == "" || h == "healthy")) || IsNotFound(err) {
					ready = append(ready, tk)
				}
			}
			if len(ready) >= want {
				return ready
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("service %s: %d task(s) not running and healthy within %v; tasks: %s\nlogs:\n%s",
				name, want, timeout, DescribeTasks(last), c.E.ServiceLogs(context.Background(), id, 30))
		case <-time.After(time.Second):
		}
	}
}

// DescribeTasks renders task states for failure messages.
func DescribeTasks(ts []Task) string {
	var s []string
	for _, tk := range ts {
		s = append(s, fmt.Sprintf("%s desired=%s state=%s msg=%q err=%q", tk.ID[:min(12, len(tk.ID))],
			tk.DesiredState, tk.Status.State, tk.Status.Message, tk.Status.Err))
	}
	sort.Strings(s)
	return "[" + strings.Join(s, "; ") + "]"
}

func withOwner(l map[string]string) map[string]string {
	out := map[string]string{OwnerLabel: "1"}
	for k, v := range l {
		out[k] = v
	}
	return out
}
