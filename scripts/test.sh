#!/usr/bin/env bash
# The project's test command (README, CI): installs the tools the integration
# tests drive as real peers, then runs formatting, lint and every test target.
# Safe to run again: tools already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need, as "command:package" pairs.
TOOLS="curl:curl openssl:openssl pebble:pebble named:bind9 promtool:prometheus amtool:prometheus-alertmanager prometheus-alertmanager:prometheus-alertmanager"

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

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --quiet --all-targets -- -D warnings
echo "==> cargo test"
cargo test --all-targets 2>&1
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
    for target in client_hello; do
        echo "==> fuzz $target for ${FUZZ_SECONDS}s"
        (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
            -max_total_time="$FUZZ_SECONDS" -max_len=70000 -print_final_stats=1 2>&1 | tail -n 30)
    done
fi
