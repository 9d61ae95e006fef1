#!/usr/bin/env bash
# Curation through the real path (issue #26.2): a mini-LAION of N pairs, a Dask scheduler and W
# workers started by the `dask` CLI, `t2i curate --dask-address` (the Prefect flow, ephemeral API),
# then bench/curate_run_report.py: pairs/s, orchestration share (wall and CPU), CPU per pair per stage.
#
#   bash bench/curate_cluster.sh N PER_SHARD WORKERS OUT      # e.g. 10000 1000 2 /tmp/c10k
#
# The sample is made before the clock starts; the wall time is the `t2i curate` command's. Run CPU =
# that command's CPU (flow + its children, e.g. the Prefect API) + the scheduler's + every worker's
# (nanny and worker process), each from /usr/bin/time when it exits. The workers get the malloc
# settings docs/scale.md measured, through Dask's pre-spawn-environ, as a user would set them.
set -euo pipefail
N=${1:?N pairs}; PER=${2:?pairs per shard}; W=${3:?workers}; OUT=${4:?output folder}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
T2I=${T2I:-t2i}
DASK=${DASK:-dask}
PORT=${PORT:-8799}
mkdir -p "$OUT"
rm -rf "$OUT/lake"
[ -d "$OUT/sample" ] || $T2I make-sample "$OUT/sample" --n "$N" --per-shard "$PER" > "$OUT/make_sample.txt"
export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{'MALLOC_TRIM_THRESHOLD_': 67108864, 'MALLOC_MMAP_THRESHOLD_': 33554432}"
/usr/bin/time -f "%U %S" -o "$OUT/cpu_scheduler.txt" $DASK scheduler --host 127.0.0.1 --port "$PORT" \
  --no-dashboard > "$OUT/scheduler.log" 2>&1 &
SCHED=$!
PIDS=()
for i in $(seq 1 "$W"); do
  /usr/bin/time -f "%U %S" -o "$OUT/cpu_worker$i.txt" $DASK worker "tcp://127.0.0.1:$PORT" --nworkers 1 \
    --nthreads 1 --no-dashboard --name "w$i" > "$OUT/worker$i.log" 2>&1 &
  PIDS+=($!)
done
# each PID is /usr/bin/time's; the dask process is its one child: that one is stopped (time then
# writes the CPU of the process and of what it waited for: the nanny's worker process)
halt() { for p in "$@"; do kill -TERM "$(pgrep -P "$p")" 2>/dev/null || true; done
         for p in "$@"; do wait "$p" 2>/dev/null || true; done; }
stop() { halt "${PIDS[@]}"; halt "$SCHED"; }
trap stop EXIT
$PY -c "from distributed import Client; Client('tcp://127.0.0.1:$PORT', timeout=120).wait_for_workers($W, timeout=300)"
uptime > "$OUT/load.txt"
/usr/bin/time -f "%e %U %S" -o "$OUT/cpu_curate.txt" $T2I curate "$OUT/sample" --lake "$OUT/lake" \
  --dask-address "tcp://127.0.0.1:$PORT" --json > "$OUT/curate.json" 2> "$OUT/curate.err"
uptime >> "$OUT/load.txt"
stop
trap - EXIT
read -r WALL CU CS < "$OUT/cpu_curate.txt"
RUN_CPU=$(cat "$OUT"/cpu_scheduler.txt "$OUT"/cpu_worker*.txt | awk -v u="$CU" -v s="$CS" '{t += $1 + $2} END {print t + u + s}')
LOAD_CPU=$($PY -c "
import time, djepa_t2i.env
from djepa_t2i.config import load_config
from tasks.model_cache import build_pipeline
t = time.process_time(); build_pipeline(load_config()); print(round(time.process_time() - t, 2))")
echo "# bash bench/curate_cluster.sh $N $PER $W $OUT: wall $WALL s, run CPU $RUN_CPU s, model load $LOAD_CPU s per worker" \
  | tee "$OUT/report.md"
cat "$OUT/load.txt" | tee -a "$OUT/report.md"
$PY bench/curate_run_report.py "$OUT/lake" --wall "$WALL" --workers "$W" --run-cpu "$RUN_CPU" --load-cpu "$LOAD_CPU" \
  | tee -a "$OUT/report.md"
