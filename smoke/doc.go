// Package smoke checks a live cluster the way a user would: the frontend
// over HTTPS through Traefik on every replica, the api health, the SFU's
// health and WebSocket over wss://webrtc.<domain>:8443, and media through the
// SFU over ICE UDP and ICE-TCP. The live run is `go test ./smoke -run Live`
// with SMOKE_OUTPUTS pointing at `pulumi stack output --json --show-secrets`;
// without it the live test skips and says why. Every check is unit-tested
// against local servers, so the code is proven without a cloud.
//
// The package's tests also check the GitHub workflows that run it.
package smoke
