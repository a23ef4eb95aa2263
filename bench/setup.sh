#!/usr/bin/env bash
# Installs what bench/run.py drives (Debian packages), when missing.
set -euo pipefail
missing=()
for pair in valgrind:valgrind wrk:wrk h2load:nghttp2-client haproxy:haproxy nginx:nginx taskset:util-linux openssl:openssl; do
    PATH="$PATH:/usr/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
