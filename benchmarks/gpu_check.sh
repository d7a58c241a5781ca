#!/usr/bin/env bash
# Every GPU check hpo needs, in one run of under 10 minutes on one GPU, ending with one table.
# Nothing here needs the network: MNIST files are generated in the real format, SVHN is
# synthetic of the real shapes, and backbones use random weights.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on a machine with a GPU
#
# 1. trials/hour of a real `hpo launch mnist-mlp` with --workers-per-gpu 1, 2 and 4 (the same
#    12 random-search trials of 2 epochs each, span from first start to last end);
# 2. CUDA_VISIBLE_DEVICES as each worker process of those launches really has it
#    (/proc/PID/environ), and how many processes nvidia-smi saw on the GPU at once;
# 3. bf16 autocast and channels_last inside a real svhn-backbone trial (ResNet-18, full
#    fine-tuning), against the same trial in fp32 (benchmarks/gpu_probe.py svhn-trial);
# 4. one MNIST epoch, the seed pipeline against hpo's loop, both on the GPU
#    (benchmarks/gpu_probe.py mnist-epoch);
# 5. the SVHN feature cache on the GPU (benchmarks/feature_cache.py --device cuda).
#
# HPO_RUN (default "uv run --locked") runs Python commands; logs and databases go to
# HPO_GPU_CHECK_DIR (default reports/gpu-check). To check this script itself without a GPU:
# a stand-in nvidia-smi on PATH, HPO_GPU_CHECK_DEVICE=cpu, and HPO_GPU_CHECK_TRIALS and
# HPO_GPU_CHECK_EPOCHS (12 and 2) made small. Each step has its own time limit, so one that
# hangs costs only its share; a failed step shows FAILED in the table and the script goes on.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a run <<< "${HPO_RUN:-uv run --locked}"
out="${HPO_GPU_CHECK_DIR:-reports/gpu-check}"
trials="${HPO_GPU_CHECK_TRIALS:-12}"
epochs="${HPO_GPU_CHECK_EPOCHS:-2}"
device="${HPO_GPU_CHECK_DEVICE:-cuda}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU is visible here (nvidia-smi -L fails): run it on a GPU machine." >&2
  exit 2
fi
mkdir -p "$out"
rm -f "$out"/*.db "$out"/*.log
export HPO_OFFLINE=1 HPO_DATA_DIR="$out/data" HPO_ARTIFACT_DIR="$out/artifacts"
export HPO_FEATURE_DIR="$out/features"
rows=()
row() { rows+=("$(printf '%-44s | %s' "$1" "$2")"); }
started=$SECONDS

gpu="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)"
row "GPU (nvidia-smi)" "$gpu"

# Real MNIST files (IDX format, 60k + 10k images) so launches read them through hpo's loader.
if ! timeout 120 "${run[@]}" python -c '
import sys
from pathlib import Path
from tests.helpers import write_mnist
write_mnist(Path(sys.argv[1]), n_train=60_000, n_test=10_000)
' "$out/data" > "$out/data.log" 2>&1; then
  echo "gpu_check: could not write the MNIST files; see $out/data.log" >&2
  exit 1
fi

descendants() {  # every process below $1
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

worker_environment() {  # CUDA_VISIBLE_DEVICES of each spawned worker process below $1
  local pid value
  for pid in $(descendants "$1"); do
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "spawn_main"; then
      value="$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null \
               | sed -n 's/^CUDA_VISIBLE_DEVICES=//p')"
      echo "$pid=${value:-unset}"
    fi
  done
}

for per_gpu in 1 2 4; do
  db="$out/launch-$per_gpu.db"
  log="$out/launch-$per_gpu.log"
  timeout 110 "${run[@]}" hpo launch mnist-mlp --trials "$trials" --epochs "$epochs" \
    --workers-per-gpu "$per_gpu" --sampler random --pruner none --seed 1 \
    --storage "sqlite:///$db" --data-dir "$out/data" --keep-checkpoints 0 > "$log" 2>&1 &
  launch=$!
  seen=""
  on_gpu=0
  while kill -0 "$launch" 2>/dev/null; do
    for entry in $(worker_environment "$launch"); do
      case " $seen " in *" $entry "*) ;; *) seen="$seen $entry" ;; esac
    done
    count="$(nvidia-smi --query-compute-apps=pid --format=csv,noheader | grep -c . || true)"
    if [ "$count" -gt "$on_gpu" ]; then on_gpu=$count; fi
    sleep 1
  done
  if wait "$launch"; then
    rate="$(timeout 60 "${run[@]}" python -c '
import sys
import optuna
trials = optuna.load_study(study_name="mnist-mlp", storage=sys.argv[1]).get_trials()
done = [t for t in trials if t.state.is_finished()]
span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done))
devices = ",".join(sorted({t.user_attrs.get("device", "?") for t in done}))
print(f"{len(done) / span.total_seconds() * 3600:.0f} trials/h ({len(done)} trials, "
      f"{span.total_seconds():.1f} s, devices {devices})")
' "sqlite:///$db" 2>>"$log" || echo "FAILED to read the study, see $log")"
  else
    rate="FAILED (exit $?), see $log"
  fi
  row "launch mnist-mlp, --workers-per-gpu $per_gpu" "$rate"
  values="$(for entry in $seen; do echo "${entry#*=}"; done | sort | uniq -c \
            | awk '{printf "%s%sx %s", sep, $1, $2; sep=", "}')"
  row "  CUDA_VISIBLE_DEVICES in its workers" \
      "${values:-none seen}; at most $on_gpu process(es) on the GPU at once"
done

probe() {  # name, time limit, command...: key=value lines into $out/NAME.out
  local name=$1 limit=$2
  shift 2
  if timeout "$limit" "$@" > "$out/$name.out" 2> "$out/$name.log"; then
    return 0
  fi
  echo "FAILED (exit $?), see $out/$name.log" > "$out/$name.failed"
  return 1
}
value() { sed -n "s/^$1=//p" "$out/$2.out" | head -n 1; }

if probe svhn 100 "${run[@]}" python benchmarks/gpu_probe.py svhn-trial --device "$device"; then
  for precision in bf16 fp32; do
    row "svhn-backbone trial, ResNet-18 full, $precision" \
        "$(value "svhn_${precision}_state" svhn) on $(value "svhn_${precision}_device" svhn), \
$(value "svhn_${precision}_seconds_per_epoch" svhn) s/epoch; first conv: output \
$(value "svhn_${precision}_conv_output_dtype" svhn), input channels_last \
$(value "svhn_${precision}_input_channels_last" svhn), weight channels_last \
$(value "svhn_${precision}_weight_channels_last" svhn)"
  done
else
  row "svhn-backbone trial, bf16 + channels_last" "$(cat "$out/svhn.failed")"
fi

if probe mnist 100 "${run[@]}" python benchmarks/gpu_probe.py mnist-epoch --device "$device" \
     --data-dir "$out/data"; then
  row "MNIST epoch on the GPU: seed pipeline vs hpo" \
      "seed $(value mnist_seed_seconds mnist) s, hpo $(value mnist_hpo_seconds mnist) s: \
$(value mnist_speedup mnist)x (val_accuracy $(value mnist_seed_val_accuracy mnist) / \
$(value mnist_hpo_val_accuracy mnist))"
else
  row "MNIST epoch on the GPU: seed pipeline vs hpo" "$(cat "$out/mnist.failed")"
fi

if probe features 90 "${run[@]}" python benchmarks/feature_cache.py --device "$device"; then
  row "feature cache on the GPU (ResNet-18, 224 px)" \
      "$(grep -m 1 '^speed-up' "$out/features.out"); $(grep -m 1 '^no cache' "$out/features.out" \
         | tr -s ' ')"
else
  row "feature cache on the GPU (ResNet-18, 224 px)" "$(cat "$out/features.failed")"
fi

echo
printf '%-44s | %s\n' "check" "result"
printf '%s\n' "---------------------------------------------+-------------------------------------"
printf '%s\n' "${rows[@]}"
echo
echo "took $((SECONDS - started)) s; logs and databases in $out"
