#!/bin/sh
# The main job on the shipped example, with the embedded SQLite state (.campaigns/state.db):
# the whole path of a change, from validation to delivery, as CI and the executor run it.
set -eu
cd "$(dirname "$0")/.."
NOW=2026-12-01T09:30:00+08:00   # inside the first windows of the example's December tasks

step() { printf '\n== %s\n' "$*"; }

step campaigns validate
campaigns validate

step campaigns users import audiences/users.csv
campaigns users import audiences/users.csv

step campaigns schedule flash-sale-push --to 2026-12-10
campaigns schedule flash-sale-push --to 2026-12-10

step campaigns plan
campaigns plan

step "campaigns preview   (open .campaigns/preview/index.html in a browser)"
campaigns preview --now "$NOW"

for task in flash-sale-push flash-sale-sms weekly-points-inbox monthly-rewards-mp; do
  step campaigns test "$task"
  campaigns test "$task"
done

step "campaigns apply --approved-by ... --reason ...   (CI passes the merged pull request's event instead)"
campaigns apply --approved-by "$(id -un)" --reason "Example run of the shipped repository"

step campaigns plan "(nothing left to do)"
campaigns plan

step "campaigns run --once --now $NOW"
campaigns run --once --now "$NOW"

step campaigns report flash-sale-push
campaigns report flash-sale-push

step campaigns status
# exits 1 when an occurrence is overdue: on a laptop no executor service runs between the example's dates
campaigns status || echo "(no executor service runs here, so occurrences past their windows show as behind)"

step "messages written by the outbox provider"
wc -l .campaigns/outbox/*.jsonl
