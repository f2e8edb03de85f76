#!/usr/bin/env bash
# Deployment checks without a cluster or a Docker engine: helm lint for every
# values file, then the deploy/validate Go module (helm template strictly
# decoded with client-go's scheme, the values schema's negative cases,
# docker-compose.yml through compose-go, the Dockerfile's final stage).
# Idempotent: helm is installed into $(go env GOPATH)/bin only when the one
# found is not HELM_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
# The Kubernetes version helm v3.22.0's release binaries assume without a
# cluster (its Makefile derives it from client-go v0.37.0): `helm template`,
# `helm lint` and `helm install --dry-run` check kubeVersion against it.
HELM_K8S_MINOR=37
export PATH="$(go env GOPATH)/bin:$PATH"

if ! helm version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "deploy: installing helm $HELM_VERSION (builds from source, a few minutes)"
  # The release Makefile's -X flags: without them `go install` reports
  # version "v3.22" and assumes Kubernetes 1.20.
  ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  GOBIN="$(go env GOPATH)/bin" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
if ! helm version --template '{{.Version}}' | grep -qx "$HELM_VERSION"; then
  echo "deploy: $(command -v helm) is not helm $HELM_VERSION; put $(go env GOPATH)/bin first on PATH" >&2
  exit 1
fi
echo "deploy: $(command -v helm) $(helm version --template '{{.Version}}')"

chart=charts/herald
echo "deploy: helm lint (default values)"
helm lint --strict "$chart"
for values in "$chart"/values-*.yaml; do
  echo "deploy: helm lint $values"
  helm lint --strict "$chart" -f "$values"
done

echo "deploy: go test (deploy/validate)"
# The validation module has its own go.mod, so client-go and compose-go stay
# out of the main module's build.
(cd deploy/validate && HERALD_REQUIRE_SERVICES="${HERALD_REQUIRE_SERVICES:-1}" go test -count=1 ./...)
