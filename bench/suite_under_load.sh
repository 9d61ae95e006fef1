#!/usr/bin/env bash
# Issue #25 item 6: N consecutive full `make test` runs while another process keeps one core busy.
# usage: bench/suite_under_load.sh [N=10] [LOG_DIR=runs/suite-under-load]
# Writes LOG_DIR/run-I.log (pytest's output) and LOG_DIR/runs.csv (run, exit code, seconds, load
# average, pytest's last line); exits 1 if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}
logs=${2:-runs/suite-under-load}
mkdir -p "$logs"
yes > /dev/null &  # the other process: one core busy for the whole loop, at normal priority
load=$!
trap 'kill $load 2>/dev/null' EXIT
echo "run,exit,seconds,loadavg_1min,summary" > "$logs/runs.csv"
for i in $(seq "$n"); do
  start=$(date +%s)
  make test > "$logs/run-$i.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  summary=$(grep -E "passed|failed|error" "$logs/run-$i.log" | tail -1 | tr -d '=' | tr ',' ';' | xargs)
  echo "$i,$rc,$secs,$(cut -d' ' -f1 /proc/loadavg),$summary" | tee -a "$logs/runs.csv"
done
awk -F, 'NR > 1 && $2 != 0 {bad++} END {exit bad > 0}' "$logs/runs.csv"
