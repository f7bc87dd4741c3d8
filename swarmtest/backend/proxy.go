package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
)

// The stand-in for the stack's read-only Docker API proxy: GET (and HEAD)
// of the API sections its environment enables (SERVICES=1, TASKS=1, ...,
// as the proxy image reads them), through the engine's socket; anything
// else is 403. Traefik reads the swarm through it in the local proof, so
// that proof shows Traefik needs nothing more.

// sections maps the proxy's variables to the API paths they open.
var sections = map[string]string{
	"PING": "_ping", "VERSION": "version", "INFO": "info", "EVENTS": "events",
	"SERVICES": "services", "TASKS": "tasks", "NETWORKS": "networks", "NODES": "nodes",
	"CONTAINERS": "containers", "IMAGES": "images", "EXEC": "exec", "SECRETS": "secrets",
	"CONFIGS": "configs", "VOLUMES": "volumes", "SWARM": "swarm",
}

var apiPath = regexp.MustCompile(`^(/v[0-9.]+)?/([a-z_]+)`)

func socketProxy(socket string) http.Handler {
	open := map[string]bool{}
	for env, section := range sections {
		open[section] = os.Getenv(env) == "1"
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: "docker"})
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}
	rp.FlushInterval = -1 // events stream
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := apiPath.FindStringSubmatch(r.URL.Path)
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || m == nil || !open[m[2]] {
			http.Error(w, "forbidden by the read-only proxy", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	})
}
