# syntax=docker/dockerfile:1
#
# exportbridge container image: a static binary on distroless, running as non-root.
#
#   docker build -t exportbridge --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) .
#   docker run -e EXPORTBRIDGE_API_TOKEN=... -e EXPORTBRIDGE_STDOUT=true -v exportbridge-data:/data exportbridge
#
# The build step is scripts/build.sh, the same script CI runs (scripts/build_test.go),
# so the exact build command is tested even where no container engine runs.

FROM golang:1.26 AS build
WORKDIR /src
# Module downloads first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION
ARG COMMIT
RUN OUT=/out/exportbridge ./scripts/build.sh \
	&& /out/exportbridge version \
	&& mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/exportbridge /exportbridge
# /data exists in the image and belongs to the non-root user, so a fresh named volume
# (which copies the image's directory) is writable by the bridge.
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
ENV EXPORTBRIDGE_STATE_DIR=/data
VOLUME /data
# Health and metrics (EXPORTBRIDGE_LISTEN_ADDR). The admin endpoint stays on the
# container's loopback (127.0.0.1:9091): use it with `docker exec ... /exportbridge dlq list`.
EXPOSE 9090
# The image has no curl: the binary asks its own /healthz.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["/exportbridge", "healthcheck"]
ENTRYPOINT ["/exportbridge"]
CMD ["run"]
