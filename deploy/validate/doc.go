// Package validate checks Herald's deployment files without a Kubernetes
// cluster or a Docker engine:
//
//   - charts/herald: `helm template` for every values file, each document
//     strictly decoded with client-go's scheme (the ServiceMonitor, a CRD,
//     against the fields the chart uses); the Deployment runs the README's
//     `serve --config` and the migration runs `migrate`; the rendered
//     herald.yaml holds only keys of config/herald.example.yaml and is
//     accepted by the real binary; values.schema.json follows the config
//     keys; bad values make `helm template` and `helm lint` fail.
//   - docker-compose.yml: loaded with compose-go, Herald built from the
//     repository's Dockerfile, every herald command accepted by the binary,
//     healthchecks and start order in place.
//   - Dockerfile: a static ./cmd/herald on distroless, run as nonroot.
//
// It is a module of its own so that client-go and compose-go never enter
// the main module's build. Run it with `cd deploy/validate && go test ./...`
// (or .ci/deploy.sh, which installs helm first). Without helm the chart tests
// skip, unless HERALD_REQUIRE_SERVICES=1.
package validate
