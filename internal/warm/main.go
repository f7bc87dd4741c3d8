package main

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/coder/websocket"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/moby/swarmkit/v2/manager/constraint"
	_ "github.com/pion/interceptor/pkg/nack"
	_ "github.com/pion/webrtc/v4"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/pulumi/pulumi-cloudflare/sdk/v5/go/cloudflare"
	_ "github.com/pulumi/pulumi-command/sdk/go/command/remote"
	_ "github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	_ "github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/artifactregistry"
	_ "github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/compute"
	_ "github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/projects"
	_ "github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/serviceaccount"
	_ "github.com/pulumi/pulumi-random/sdk/v4/go/random"
	_ "github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	_ "github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func main() {}
