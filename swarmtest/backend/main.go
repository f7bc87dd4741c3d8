// Command backend is the stand-in for the stack's services whose images
// cannot be pulled on a machine without a registry (frontend, api, ...): the
// local Swarm proof (package swarmtest) runs it under each such service's
// declared name, ports, labels, networks and placement. It answers every
// path with 200 and a JSON body naming the service and task, so a test can
// tell which service Traefik routed a request to, and /health for health
// checks. It listens on every port in PORTS (default 80,8080,3000) because
// each stand-in keeps the target port its service declares. With
// DOCKER_PROXY_SOCKET it stands in for the read-only Docker API proxy.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"strings"
)

// ReplicaHeader carries the answering task's hostname.
const ReplicaHeader = "X-Swarmtest-Replica"

func main() {
	probe := flag.String("probe", "", "GET this URL and exit 0 on 200 (container health check; the image has no shell)")
	flag.Parse()
	if *probe != "" {
		resp, err := http.Get(*probe)
		if err != nil || resp.StatusCode != http.StatusOK {
			os.Exit(1)
		}
		os.Exit(0)
	}

	service := os.Getenv("SERVICE_NAME")
	host, _ := os.Hostname()
	if socket := os.Getenv("DOCKER_PROXY_SOCKET"); socket != "" {
		log.Printf("backend %q: read-only Docker API proxy to %s on :2375", service, socket)
		log.Fatal(http.ListenAndServe(":2375", socketProxy(socket)))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// Tells replicas apart behind a load balancer.
		w.Header().Set(ReplicaHeader, host)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"service": service, "hostname": host, "host": r.Host, "path": r.URL.Path,
		})
	})
	ports := os.Getenv("PORTS")
	if ports == "" {
		ports = "80,8080,3000"
	}
	errs := make(chan error)
	for _, p := range strings.Split(ports, ",") {
		go func(addr string) { errs <- http.ListenAndServe(addr, mux) }(":" + strings.TrimSpace(p))
	}
	log.Printf("backend %q on ports %s", service, ports)
	log.Fatal(<-errs)
}
