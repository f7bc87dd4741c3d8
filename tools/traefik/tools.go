//go:build tools

// Package traefik pins the Traefik command this wrapper module builds.
package traefik

import _ "github.com/traefik/traefik/v3/cmd/traefik"
