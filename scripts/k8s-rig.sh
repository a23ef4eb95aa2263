#!/usr/bin/env bash
# Builds the real Kubernetes control plane the Kubernetes-mode tests start
# (tests/support/control_plane.rs), compiled from the pinned Go wrapper module
# tests/k8s/rig (k8s.io/kubernetes v1.36.3, etcd server v3.6.8,
# sigs.k8s.io/gateway-api and its conformance module v1.6.1):
#   - kube-apiserver and etcd (every Kubernetes-mode test);
#   - kube-controller-manager and kube-scheduler (tests that run workloads,
#     ControlPlaneOptions::controllers);
#   - echo-basic, the Gateway API conformance suite's echo backend
#     (sigs.k8s.io/gateway-api/conformance/echo-basic), and nodeagent, the
#     tests' stand-in kubelet that runs it for pods (tests/k8s/rig/nodeagent);
#   - conformance.test, the upstream conformance suite as a test binary
#     (tests/k8s/rig/conformance, `go test -c`);
# plus the Gateway API CRDs (standard and experimental channels) of the
# sigs.k8s.io/gateway-api module that go.mod pins.
#
# The result is cached outside the clone, once per machine and version:
#   ${PORTCULLIS_RIG_CACHE:-$HOME/.cache/portcullis/k8s-rig}/<key>/
#     bin/{kube-apiserver,kube-controller-manager,kube-scheduler,etcd,echo-basic,nodeagent,conformance.test}
#     crds/standard/*.yaml  crds/experimental/*.yaml  manifest
# where <key> hashes go.mod, go.sum, the wrapper's sources and the build command.
# A complete entry is reused without running go at all. A build goes to a
# temporary directory that is renamed into place, so an interrupted build never
# leaves a half entry; concurrent runs wait for each other on a lock.
#
# Pinned: go.sum is committed and the build runs with -mod=readonly, so it
# fails rather than resolve anything new. Never 'go get -u' in tests/k8s/rig
# (the newest kube-openapi needs a newer Go).
#
# Cold build (Go 1.26, module cache downloaded, empty Go build cache), measured
# on the project machine: kube-apiserver and etcd alone took 11 min 17 s of CPU
# (9:24 user + 1:53 sys), about 6 min on 2 idle cores (37 min wall while other
# builds loaded the machine ~13); remeasured with the conformance module's
# dependencies, 2026-12-07: kube-apiserver + etcd 9 min 57 s of CPU (10.3 min
# wall, machine shared), then on that cache kube-controller-manager +
# kube-scheduler + echo-basic + nodeagent 2 min 34 s of CPU (2.5 min wall) and
# conformance.test 58 s (56 s wall): 3 min 32 s more, 13 min 29 s of CPU in
# all, about 7 min on 2 idle cores. Warm Go build cache: 20-70 s. Complete
# cache entry: ~50 ms, no go run.
#
# Prints progress on stderr and the cache entry's path as the last line of stdout.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
module="$root/tests/k8s/rig"
cache="${PORTCULLIS_RIG_CACHE:-$HOME/.cache/portcullis/k8s-rig}"

KUBE_VERSION="v1.36.3"
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36"
PACKAGES="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler ./etcd sigs.k8s.io/gateway-api/conformance/echo-basic ./nodeagent"
BINARIES="kube-apiserver kube-controller-manager kube-scheduler etcd echo-basic nodeagent conformance.test"
RECIPE="CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags '$LDFLAGS' $PACKAGES; go test -c ./conformance; crds: standard, experimental as released"

key="$(
    {
        echo "$RECIPE"
        uname -sm
        cat "$module/go.mod" "$module/go.sum" "$module/etcd/main.go" "$module/crds.go" "$module"/nodeagent/*.go "$module"/conformance/*.go
    } | sha256sum | cut -c1-16
)"
entry="$cache/$key"

is_complete() {
    for binary in $BINARIES; do
        [ -x "$1/bin/$binary" ] || return 1
    done
    [ -f "$1/manifest" ] &&
        [ -n "$(ls "$1/crds/standard" 2>/dev/null)" ] && [ -n "$(ls "$1/crds/experimental" 2>/dev/null)" ]
}

if is_complete "$entry"; then
    echo "$entry"
    exit 0
fi

mkdir -p "$cache"
# One build at a time per cache (parallel test processes may all ask at once);
# whoever waited finds the entry complete.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/.lock"
    flock 9
fi
if is_complete "$entry"; then
    echo "$entry"
    exit 0
fi

command -v go >/dev/null 2>&1 || {
    echo "k8s-rig: go is not installed (Go 1.26 builds the test control plane)" >&2
    exit 1
}

tmp="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/crds"

echo "==> k8s-rig: building $BINARIES ($KUBE_VERSION) into $entry (cold: several minutes)" >&2
started="$(date +%s)"
(
    cd "$module"
    # shellcheck disable=SC2086 # PACKAGES is a list of package patterns
    CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$LDFLAGS" -o "$tmp/bin/" $PACKAGES
    CGO_ENABLED=0 go test -c -mod=readonly -trimpath -o "$tmp/bin/conformance.test" ./conformance
) >&2
seconds="$(($(date +%s) - started))"
echo "==> k8s-rig: built in ${seconds}s" >&2

# The channels as released: where a channel has a kustomization.yaml, the
# files it lists (experimental also carries a file no release bundle
# includes), else every YAML file of the directory.
# No built package imports gateway-api, so the build may not have fetched it:
# download it (checked against go.sum) before asking for its directory.
(cd "$module" && go mod download sigs.k8s.io/gateway-api) >&2
gateway_api="$(cd "$module" && go list -mod=readonly -m -f '{{.Dir}} {{.Version}}' sigs.k8s.io/gateway-api)"
gateway_api_dir="${gateway_api% *}"
if [ ! -d "$gateway_api_dir/config/crd" ]; then
    echo "k8s-rig: the sigs.k8s.io/gateway-api module has no config/crd (got '$gateway_api')" >&2
    exit 1
fi
for channel in standard experimental; do
    src="$gateway_api_dir/config/crd/$channel"
    mkdir -p "$tmp/crds/$channel"
    if [ -f "$src/kustomization.yaml" ]; then
        files="$(sed -n 's/^- *\([A-Za-z0-9._-]*\.yaml\) *$/\1/p' "$src/kustomization.yaml")"
    else
        files="$(cd "$src" && ls -- *.yaml)"
    fi
    for file in $files; do
        cp "$src/$file" "$tmp/crds/$channel/$file"
    done
done
chmod -R u+w,go+rX "$tmp"

{
    echo "kube-apiserver $KUBE_VERSION"
    echo "etcd $(cd "$module" && go list -mod=readonly -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
    echo "gateway-api ${gateway_api#* }"
    echo "gateway-api-conformance $(cd "$module" && go list -mod=readonly -m -f '{{.Version}}' sigs.k8s.io/gateway-api/conformance)"
    echo "go $(go env GOVERSION)"
    echo "built-in-seconds $seconds"
    echo "recipe $RECIPE"
} >"$tmp/manifest"
is_complete "$tmp" || {
    echo "k8s-rig: incomplete build in $tmp (binaries or CRDs missing)" >&2
    exit 1
}

# An incomplete entry can only be one someone damaged by hand: replace it.
rm -rf "$entry"
mv -T "$tmp" "$entry"
trap - EXIT
echo "$entry"
