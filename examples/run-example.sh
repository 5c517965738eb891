#!/bin/sh
# The main job on the shipped example, with the embedded SQLite state (.campaigns/state.db).
set -eu
cd "$(dirname "$0")/.."
echo "== campaigns validate"
campaigns validate
echo "== campaigns schedule flash-sale-push --to 2026-12-10"
campaigns schedule flash-sale-push --to 2026-12-10
