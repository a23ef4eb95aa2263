#!/usr/bin/env bash
# Builds portcullis and serves examples/quickstart unprivileged: every listener
# port is shifted by PORT_OFFSET (default 8000, so HTTPS 443 -> 8443 and
# HTTP 80 -> 8080). Admin endpoints on 127.0.0.1:9901.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT_OFFSET="${PORT_OFFSET:-8000}"
ADMIN_ADDR="${ADMIN_ADDR:-127.0.0.1:9901}"
STATE_DIR="${STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/portcullis-quickstart}"
mkdir -p "$STATE_DIR"

cargo build --release --quiet

https_port=$((443 + PORT_OFFSET))
http_port=$((80 + PORT_OFFSET))
cat <<MSG
portcullis is serving examples/quickstart. Try:

  ./target/release/portcullis ca export --state "$STATE_DIR" > /tmp/portcullis-root.pem
  curl --cacert /tmp/portcullis-root.pem https://localhost:${https_port}/
  ./target/release/portcullis certs --config examples/quickstart --state "$STATE_DIR"
  curl -i http://localhost:${http_port}/          # redirects to HTTPS
  curl http://${ADMIN_ADDR}/status                # conditions of every object

Edit files under examples/quickstart/: changes apply without a restart.
Press Ctrl-C to stop.
MSG

exec ./target/release/portcullis serve \
    --config examples/quickstart \
    --state "$STATE_DIR" \
    --admin-addr "$ADMIN_ADDR" \
    --listen-address 127.0.0.1 \
    --port-offset "$PORT_OFFSET"
