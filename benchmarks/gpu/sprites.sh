#!/usr/bin/env bash
# The sprites model on an accelerator: how far its half-precision UNet calls are from float32's, the control
# benchmark's main rows (plain vs SG-I2V) in float16 and float32, and the speed of train-sprites there. Each
# part is bounded by `timeout`, so a slow one cannot take the others' time; what a part finished is kept even
# when it is cut off.
#   bash benchmarks/gpu/sprites.sh [--device cuda] [--cases 12] [--seconds 75] [--train-steps 300]
# Results go to $OUT (else benchmarks/results/gpu/sprites): precision-DEVICE.json, one tar per control run, train.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
device=cuda cases=12 seconds=75 train_steps=300
while [ $# -gt 0 ]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --cases) cases=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --train-steps) train_steps=$2; shift 2 ;;
        *) echo "sprites.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
source benchmarks/gpu/env.sh
out=${OUT:-benchmarks/results/gpu/sprites}
mkdir -p "$out"
work=$(mktemp -d)
until=$(awk "BEGIN {print ($seconds - 25) / 60}")  # control.py stops starting cases then and writes its summary
echo "== half-precision replay of the UNet's calls, $device"
timeout "$seconds" "$PYTHON" benchmarks/sprites_precision.py --case 1 --device "$device" --threads 4 --stages \
    --json "$out/precision-$device.json"
for dtype in float16 float32; do
    echo "== control, $device, $dtype, $cases cases"
    timeout "$seconds" "$PYTHON" benchmarks/control.py --device "$device" --dtype "$dtype" --rows main \
        --cases "$cases" --threads 4 --until "$until" --out "$work/control-$dtype"
    echo "control $dtype: exit $?"
    rm -rf "$work/control-$dtype/frames"
    tar -C "$work" -czf "$out/control-$device-$dtype.tgz" "control-$dtype"
done
echo "== train-sprites, $device, $train_steps UNet steps on 64 videos"
timeout "$seconds" "$PYTHON" -m sgi2v train-sprites -o "$work/train" --videos 64 --vae-from sprites \
    --unet-steps "$train_steps" --device "$device" --threads 4 2>&1 | tee "$out/train.log"
cp "$work/train/train_log.jsonl" "$work/train/report.json" "$out/" 2>/dev/null
rm -rf "$work"
