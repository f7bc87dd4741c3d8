#!/usr/bin/env bash
# Builds the translation agent's binary and image, pushes it to Artifact
# Registry and prints the pushed repo digest (the only stdout line): the
# agent service runs that digest. Run by the program's local.Command only
# when the hash of agent/ and sfu/ changes.
#
# The agent links libopus and pocketsphinx (cgo), so its C libraries must be
# the image's: the binary is built in a Debian 12 Go container (the
# deployer needs only Docker, whatever its own distribution), with the
# module cache in a named volume so later builds download nothing again.
#
# Env: REPO_ROOT, IMAGE (registry/project/repo/agent:<tag>), REGISTRY (host),
# REGISTRY_TOKEN (an OAuth access token; never printed).
set -euo pipefail
cd "$REPO_ROOT"

context=$(mktemp -d)
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf "$context" "$DOCKER_CONFIG"' EXIT

docker run --rm -e GOMODCACHE=/gomod -e OWNER="$(id -u):$(id -g)" \
	-v platform-agent-gomod:/gomod -v "$PWD":/src:ro -v "$context":/out -w /src golang:1.26-bookworm \
	sh -c 'apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			libopus-dev libopusfile-dev libpocketsphinx-dev libsphinxbase-dev pkg-config >/dev/null &&
		go build -buildvcs=false -trimpath -ldflags="-s -w" -o /out/agent ./agent/cmd/agent &&
		chown "$OWNER" /out/agent' >&2
docker build --platform linux/amd64 -t "$IMAGE" -f agent/Dockerfile "$context" >&2

printf '%s' "$REGISTRY_TOKEN" | docker login --username oauth2accesstoken --password-stdin "https://$REGISTRY" >&2
docker push "$IMAGE" >&2
docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$IMAGE" | grep -m1 "^${IMAGE%:*}@sha256:"
