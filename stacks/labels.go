package stacks

import (
	"fmt"
	"strconv"
	"strings"
)

// ProxyService is the logical name of the Traefik service; the validator
// checks every routed service against it.
const ProxyService = "traefik"

// CertResolver is the name of Traefik's ACME certificate resolver.
const CertResolver = "le"

// dummyPort is the port label Traefik's Swarm provider needs even on a
// service whose only routes go to Traefik internals (api@internal): without
// a port label the whole service is skipped (Traefik docs, Swarm provider).
const dummyPort = 9999

// TraefikLabels generates the Traefik v3 Swarm-provider SERVICE labels for
// svc's routes and middlewares. proxyNetwork is the docker name of the
// network Traefik reaches the service on; it is written as
// traefik.docker.network whenever the service is on more than one network,
// the only form Traefik v3.0 reads. Returns nil for a service with
// no routes and no middlewares.
func TraefikLabels(svc *Service, proxyNetwork string) map[string]string {
	if len(svc.Routes) == 0 && len(svc.Middlewares) == 0 {
		return nil
	}
	l := map[string]string{"traefik.enable": "true"}
	ownPorts := map[int]bool{}
	for _, r := range svc.Routes {
		p := "traefik.http.routers." + r.Name + "."
		l[p+"rule"] = RouteRule(r)
		if r.EntryPoint != "" {
			l[p+"entrypoints"] = r.EntryPoint
		}
		if r.TLS {
			l[p+"tls"] = "true"
			l[p+"tls.certresolver"] = CertResolver
		}
		if len(r.Middlewares) > 0 {
			l[p+"middlewares"] = strings.Join(r.Middlewares, ",")
		}
		if r.Priority != 0 {
			l[p+"priority"] = strconv.Itoa(r.Priority)
		}
		if r.Internal != "" {
			l[p+"service"] = r.Internal
			continue
		}
		l[p+"service"] = lbName(svc.Name, r.Port)
		ownPorts[r.Port] = true
	}
	if len(ownPorts) == 0 {
		ownPorts[dummyPort] = true
	}
	for port := range ownPorts {
		l["traefik.http.services."+lbName(svc.Name, port)+".loadbalancer.server.port"] = strconv.Itoa(port)
	}
	for _, m := range svc.Middlewares {
		p := "traefik.http.middlewares." + m.Name + "."
		if len(m.StripPrefixes) > 0 {
			l[p+"stripprefix.prefixes"] = strings.Join(m.StripPrefixes, ",")
		}
		if m.BasicAuthUsersFile != "" {
			l[p+"basicauth.usersfile"] = m.BasicAuthUsersFile
		}
	}
	if len(svc.Networks) > 1 {
		l["traefik.docker.network"] = proxyNetwork
	}
	return l
}

func lbName(service string, port int) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(service, "_", "-"), port)
}

// RouteRule is the Traefik rule of a route:
// (Host(`a`) || Host(`b`)) && (PathPrefix(`/x`) || PathPrefix(`/y`)).
func RouteRule(r Route) string {
	var hosts, paths []string
	for _, h := range r.Hosts {
		hosts = append(hosts, "Host(`"+h+"`)")
	}
	for _, p := range r.PathPrefixes {
		paths = append(paths, "PathPrefix(`"+p+"`)")
	}
	rule := group(hosts)
	if len(paths) > 0 {
		if rule != "" {
			rule += " && "
		}
		rule += group(paths)
	}
	return rule
}

func group(terms []string) string {
	switch len(terms) {
	case 0:
		return ""
	case 1:
		return terms[0]
	}
	return "(" + strings.Join(terms, " || ") + ")"
}
