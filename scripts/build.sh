#!/bin/sh
# Builds the static exportbridge binary. The Dockerfile runs this script, and so does CI
# (scripts/build_test.go), so the container's build command is proven without a
# container engine.
#
#   VERSION  version to embed (default: git describe, else "dev")
#   COMMIT   commit to embed (default: git rev-parse HEAD, else "unknown")
#   OUT      output path (default: bin/exportbridge)
set -eu
cd "$(dirname "$0")/.."

if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
if [ -z "${COMMIT:-}" ]; then
	COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
fi

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "${OUT:-bin/exportbridge}" ./cmd/exportbridge
