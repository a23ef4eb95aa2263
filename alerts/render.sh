#!/usr/bin/env bash
# Prints alerts/portcullis.rules.yaml with some parameters changed.
#
#   bash alerts/render.sh NAME=VALUE... > rules.yaml
#
# Every line of the rules file that ends in "# param NAME=DEFAULT" holds the
# parameter NAME; rendering replaces DEFAULT by VALUE on those lines (and in
# the marker, so a rendered file can be rendered again). Unknown names are an
# error. Parameters: docs/runbooks.md, "Tuning the rules".
set -euo pipefail
rules="$(dirname "$0")/portcullis.rules.yaml"
script=""
for pair in "$@"; do
    name="${pair%%=*}"
    value="${pair#*=}"
    if [[ ! "$name" =~ ^[A-Z_]+$ || "$pair" != *=* ]]; then
        echo "render.sh: expected NAME=VALUE, got '$pair'" >&2
        exit 2
    fi
    if [[ ! "$value" =~ ^[A-Za-z0-9_.:/-]+$ ]]; then
        echo "render.sh: unsupported characters in the value of $name" >&2
        exit 2
    fi
    default="$(grep -o "# param $name=[^ ]*\$" "$rules" | head -n 1 | cut -d= -f2- || true)"
    if [ -z "$default" ]; then
        echo "render.sh: no parameter $name in $rules" >&2
        exit 2
    fi
    script+="/# param $name=/s|$default|$value|g;"
done
sed -e "$script" "$rules"
