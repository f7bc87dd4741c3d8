// Package web embeds the browser client module and the demo page that the
// SFU serves at / and /client/.
package web

import "embed"

// Files are the static files of this directory (Go sources are excluded
// by the server's file filter).
//
//go:embed *
var Files embed.FS
