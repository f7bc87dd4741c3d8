#!/usr/bin/env bash
# Builds the SFU's static binary and image, pushes it to Artifact Registry and
# prints the pushed repo digest (the only stdout line): the SFU service runs
# that digest. Run by the program's local.Command only when the hash of sfu/
# changes, so the registry is the cache and a fresh machine rebuilds nothing.
#
# Env: REPO_ROOT, IMAGE (registry/project/repo/sfu:<tag>), REGISTRY (host),
# REGISTRY_TOKEN (an OAuth access token; never printed).
set -euo pipefail
cd "$REPO_ROOT"

# Scratch dirs: the build context (only the binary) and a throwaway docker
# client config, so the token never lands in the deployer's ~/.docker.
context=$(mktemp -d)
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf "$context" "$DOCKER_CONFIG"' EXIT

# sfu/Dockerfile is FROM scratch and copies a prebuilt static binary named
# sfu from the context (no builder stage: no base image can be pulled where
# it is tested), so the binary is built here.
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w' -o "$context/sfu" ./sfu/cmd/sfu >&2
docker build --platform linux/amd64 -t "$IMAGE" -f sfu/Dockerfile "$context" >&2

printf '%s' "$REGISTRY_TOKEN" | docker login --username oauth2accesstoken --password-stdin "https://$REGISTRY" >&2
docker push "$IMAGE" >&2
docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$IMAGE" | grep -m1 "^${IMAGE%:*}@sha256:"
