#!/bin/sh
# promtool (Prometheus's rule checker) for tests/deploy/test_prometheus_rules.py: Debian's
# `prometheus` package is downloaded and unpacked into .tools/prometheus/ -- not installed, so no
# service is set up or started and nothing outside the repository changes. Idempotent.
set -eu
cd "$(dirname "$0")/.."
dest=.tools/prometheus
if [ -x "$dest/usr/bin/promtool" ]; then
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt-get download needs the package lists; read them first on a machine that has none yet
(cd "$work" && apt-get download -q prometheus) || { apt-get update -q && (cd "$work" && apt-get download -q prometheus); }
mkdir -p "$dest"
dpkg-deb -x "$work"/prometheus_*.deb "$dest"
"$dest/usr/bin/promtool" --version | head -n 1
