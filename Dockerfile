# Herald's container image: one static binary on distroless, running as nonroot.
#
#   docker build -t herald .
#   docker run --rm herald version
#   docker run --rm -v herald-data:/data herald serve --config /etc/herald/herald.yaml --migrate
#
# The image's default config (deploy/container/herald.yaml) is the laptop
# setup under /data: an SQLite outbox and an embedded JetStream server. Real
# deployments mount their own /etc/herald/herald.yaml (the Helm chart does)
# and override single keys with HERALD_* variables.
#
# VERSION and COMMIT only label the image (org.opencontainers.image.*): the
# binary takes its version from Go's build info, and the build context
# leaves out .git, so `herald version` prints "devel" here.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO_ENABLED=0: the SQLite driver is pure Go, so the binary is static and
# runs on distroless/static, which has no libc.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags "-s -w" -o /out/herald ./cmd/herald
# An empty data directory owned by nonroot: the volume for SQLite and the
# embedded JetStream store, the only place Herald writes.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Relays business events from a transactional outbox to your message broker" \
      org.opencontainers.image.source="https://github.com/heraldhq/herald" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/herald /herald
COPY --from=build --chown=65532:65532 /out/data /data
COPY deploy/container/herald.yaml /etc/herald/herald.yaml
WORKDIR /data
VOLUME ["/data"]
# /metrics, /healthz and /readyz when http.listen is ":9090".
EXPOSE 9090
USER 65532:65532
ENTRYPOINT ["/herald"]
CMD ["serve", "--config", "/etc/herald/herald.yaml"]
