#!/usr/bin/env bash
# The zoo's GPU work, meant for one call of under ten minutes (scripts/build_zoo.py's stages, side by side).
# By default mt-b and mt-c are searched anew: their searches, then their selections, then their final
# trainings. With ZOO_TRAIN_ONLY=1 nothing is searched: mt-a, mt-b and mt-c as selected are retrained for
# ZOO_EPOCHS, the round that closes the zoo's gaps being ZOO_TRAIN_ONLY=1 ZOO_EPOCHS=100. The peer is
# trained for ZOO_EPOCHS too unless a training of it with that count exists, so that every model beside
# the peer had the same recipe and epochs. The stage budgets are estimates: no GPU has run it yet.
#
#   MENAS_ZOO_FASHION_MNIST=data/fashion-mnist OUT=/tmp/zoo-gpu scripts/zoo_gpu.sh
#
# Settings (environment): ZOO_DEADLINE_MINUTES (9: every stage stops by then), ZOO_SEARCH_MINUTES (3.5),
# ZOO_EPOCHS (30), ZOO_TRAIN_ONLY (0), ZOO_SMOKE=1 (a few hundred images and one epoch, to try the script
# on a CPU), ZOO_DEVICE (cuda), ZOO_MAX_MACS (unset: a MACs limit for both searches beside their params
# limits). A zoo model is to be faster than the peer, and in this space ONNX Runtime's batch-1 latency on
# one CPU thread follows MACs: the peer (2.1M MACs) takes about 0.31 ms, tiny-profile networks of 3-3.5M
# MACs 0.15-0.22 ms, of 6-7M 0.32-0.44 ms, of 9-20M 0.55-1.3 ms. Without a MACs limit the winners are the
# most accurate under the params limit, and the selection takes one slower than the peer when no candidate
# is faster (its file says so).
#
# Every stage resumes where a kill or the deadline stopped it, so running the script again on the same
# machine continues. The archives hold no trial weights, so a search they carry elsewhere is selected
# from and published as it stands, not resumed. $OUT gets at most seven files, all zoo-*.tar.gz: the
# logs, results/zoo/, and the state later stages need (search states and ticket masks, final trainings),
# not every trial's weights. Extract them in the repository root, then export, time and publish on the
# machine the cards report: python scripts/build_zoo.py publish --models mt-a mt-b mt-c --epochs E.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/zoo-gpu}
LOGS=runs/zoo-gpu-logs
DEVICE=${ZOO_DEVICE:-cuda}
EPOCHS=${ZOO_EPOCHS:-30}
PY=${PYTHON:-python3}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
rm -rf "$LOGS" && mkdir -p "$LOGS/logs" "$OUT"
deadline=$(( $(date +%s) + $(awk "BEGIN { print int(${ZOO_DEADLINE_MINUTES:-9} * 60) }") ))

# stage NAME ARGS...: one build_zoo.py stage, killed (resumably) at the deadline; its log goes to the logs archive.
stage() {
    local name=$1 left=$(( deadline - $(date +%s) )); shift
    if (( left < 10 )); then echo "$name: skipped, deadline reached" | tee -a "$LOGS/status.txt"; return 1; fi
    timeout -k 15 "$left" "$PY" scripts/build_zoo.py "$@" --device "$DEVICE" >"$LOGS/logs/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc after $(( $(date +%s) - started ))s" | tee -a "$LOGS/status.txt"
    return $rc
}

started=$(date +%s)
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$LOGS/status.txt"
search_args=(--budget-minutes "${ZOO_SEARCH_MINUTES:-3.5}" ${ZOO_MAX_MACS:+--max-macs "$ZOO_MAX_MACS"})
select_args=()
train_args=(--epochs "$EPOCHS")
if [ "${ZOO_SMOKE:-0}" = 1 ]; then
    search_args+=(--train-subset 512 --population 3 --generations 1)
    select_args+=(--select-subset 512 --select-epochs 1 --candidates 2)
    EPOCHS=1
    train_args=(--epochs 1 --train-subset 512)
fi

pids=()
if [ "${ZOO_TRAIN_ONLY:-0}" = 1 ]; then  # the published winners, retrained with ZOO_EPOCHS
    for name in mt-a mt-b mt-c; do
        stage "train-$name" train --models $name "${train_args[@]}" &
        pids+=($!)
    done
else
    for cls in b c; do
        ( stage "search-$cls" search --classes $cls "${search_args[@]}" &&
          stage "select-$cls" select --classes $cls "${select_args[@]}" &&
          stage "train-mt-$cls" train --models mt-$cls "${train_args[@]}" ) &
        pids+=($!)
    done
fi
if [ ! -f "results/zoo/final-peer-e$EPOCHS.json" ]; then
    stage train-peer train --models peer "${train_args[@]}" &
    pids+=($!)
fi
wait "${pids[@]}"

"$PY" scripts/build_zoo.py table >"$LOGS/logs/table.log" 2>&1
tar -czf "$OUT/zoo-results.tar.gz" results/zoo
[ "${ZOO_TRAIN_ONLY:-0}" = 1 ] ||
    tar -czf "$OUT/zoo-searches.tar.gz" --exclude=model.safetensors --exclude=.search.lock runs/zoo/search-[bc]
for name in mt-a mt-b mt-c peer; do
    run=runs/zoo/final-$name-e$EPOCHS
    [ -d "$run" ] && tar -czf "$OUT/zoo-final-$name.tar.gz" "$run"
done
tar -czf "$OUT/zoo-logs.tar.gz" -C "$LOGS" logs status.txt
cat "$LOGS/logs/table.log"
