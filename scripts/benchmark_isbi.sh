#!/usr/bin/env bash
# Benchmark `unet-teach train`, `predict` and `evaluate --regions 255` end to end: train for a
# stated budget on one folder pair, predict another, score it; print wall times and metrics.
#
#   scripts/benchmark_isbi.sh [-m MINUTES | -s STEPS] [-t FIRST-LAST] [-e FIRST-LAST]
#                             [TRAIN_IMAGES TRAIN_LABELS EVAL_IMAGES EVAL_LABELS] [-- TRAIN_OPTIONS]
#
# Without folders, the ISBI 2012 slices in $UNET_TEACH_DATA/isbi2012/train/{images,labels}
# are linked into a temporary folder: -t (default 00-19) to train on, -e (default 20-24) to
# evaluate; then training gets --regions 255 (the threshold chosen by the validation Rand
# error, as the scoring uses it). The budget defaults to 8 minutes (the target on a 2-core
# CPU: pixel error and Rand error <= 0.075). Options after -- go to `unet-teach train`
# (e.g. -- --augment elastic --loss weighted). Prediction averages the 8 flips and rotations
# (--tta); PREDICT_OPTIONS replaces that (PREDICT_OPTIONS= for a single pass).
# KEEP=1 keeps the temporary folder (model, predictions, scores.csv, report/).
# The command run is $UNET_TEACH_CMD, else .venv/bin/python -m unet_teach, else unet-teach.
set -euo pipefail

usage() { sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
minutes=8 steps="" train_range=00-19 eval_range=20-24
while getopts "m:s:t:e:h" opt; do
    case $opt in
        m) minutes=$OPTARG ;;
        s) steps=$OPTARG ;;
        t) train_range=$OPTARG ;;
        e) eval_range=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))

here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${UNET_TEACH_CMD:-}" ]; then
    read -r -a cmd <<< "$UNET_TEACH_CMD"
elif [ -x "$here/.venv/bin/python" ]; then
    cmd=("$here/.venv/bin/python" -m unet_teach)
else
    cmd=(unet-teach)
fi

isbi=()
work=$(mktemp -d "${TMPDIR:-/tmp}/unet-teach-bench.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $work"; else trap 'rm -rf "$work"' EXIT; fi

link_slices() {   # link_slices FIRST-LAST DEST: ISBI slices FIRST..LAST into DEST/{images,labels}
    local src="${UNET_TEACH_DATA:?set UNET_TEACH_DATA to the folder that holds isbi2012/}"
    src="$src/isbi2012/train"
    mkdir -p "$2/images" "$2/labels"
    for i in $(seq -w "${1%-*}" "${1#*-}"); do
        for kind in images labels; do
            [ -f "$src/$kind/$i.png" ] || { echo "missing $src/$kind/$i.png" >&2; exit 2; }
            ln -s "$src/$kind/$i.png" "$2/$kind/$i.png"
        done
    done
}

if [ $# -ge 4 ] && [ "${1#-}" = "$1" ]; then   # folders, not options after --
    train_images=$1 train_labels=$2 eval_images=$3 eval_labels=$4
    shift 4
else
    link_slices "$train_range" "$work/train"
    link_slices "$eval_range" "$work/eval"
    train_images=$work/train/images train_labels=$work/train/labels
    eval_images=$work/eval/images eval_labels=$work/eval/labels
    isbi=(--regions 255)          # the ISBI labels: the cells are the regions of value 255
fi
[ "${1:-}" = "--" ] && shift

if [ -n "$steps" ]; then budget=(--steps "$steps"); else budget=(--minutes "$minutes"); fi
now() { date +%s.%N; }
t0=$(now)
"${cmd[@]}" train "$train_images" "$train_labels" --out "$work/model.pt" "${budget[@]}" \
    --quiet ${isbi[@]+"${isbi[@]}"} "$@"
t1=$(now)
read -r -a predict_options <<< "${PREDICT_OPTIONS---tta}"
"${cmd[@]}" predict "$work/model.pt" "$eval_images" --out "$work/pred" --quiet \
    ${predict_options[@]+"${predict_options[@]}"}
t2=$(now)
"${cmd[@]}" evaluate "$work/pred" "$eval_labels" --regions 255 --csv "$work/scores.csv" \
    --report "$work/report" --images "$eval_images" --quiet
t3=$(now)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v budget="${budget[*]}" 'BEGIN {
    printf "\nbudget %s; wall time: train %.1f s, predict %.1f s, evaluate %.1f s\n",
           budget, b - a, c - b, d - c }'
echo "predict options: ${predict_options[*]:-none}"
tail -n 1 "$work/scores.csv" | awk -F, 'NR == 1 { printf "mean: pixel error %s, dice %s, " \
    "iou %s, rand error %s, vi split %s, vi merge %s\n", $2, $3, $4, $5, $6, $7 }'
