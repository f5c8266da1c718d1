#!/usr/bin/env bash
# The GPU check (issue 17, item 5), prepared for a machine with a CUDA GPU; about 5-8 minutes.
#
#   benchmarks/gpu_check.sh            # writes its logs to $OUT (if set) or a temporary folder, and prints them
#
# 1. nvidia-smi and torch's view of the GPUs;
# 2. benchmarks/pipeline.py --throughput-only: train/eval samples/s of SmallCNN and ResNet18 on CPU and CUDA
#    (fp16 autocast, as the harness trains there) and both memory layouts side by side: the measurement
#    that decides CHANNELS_LAST for ("smallcnn"|"resnet18", "cuda") in harness/train/models.py;
# 3. a short CUDA suite on the synthetic corpus (SmallCNN and ResNet18 rows, 4 seeds, 64 mels, 5 epochs),
#    with --workers 1 and then --workers 2 on ONE GPU (CUDA_VISIBLE_DEVICES=0: both workers pinned to it),
#    each into fresh stores; the cells' device, GPU, layout, wall and CPU seconds from their MLflow runs;
# 4. benchmarks/overhead.py --quick: the per-cell overhead where training is fast (the cells run on the GPU).
# Nothing here is needed by CI or the tests; the figures go into benchmarks/README.md by hand.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
py="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
out="${OUT:-$(mktemp -d -t harness-gpu-check-XXXX)}"
tmp="$(mktemp -d -t harness-gpu-suite-XXXX)"
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" HARNESS_CACHE="$tmp/cache" PYTHONUNBUFFERED=1
echo "logs in $out"

step() { echo; echo "=== $1 ($(date -Is), load $(cut -d' ' -f1-3 /proc/loadavg))"; }

step "1. GPUs" | tee "$out/1-gpus.txt"
{ nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi: not found"
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'devices', torch.cuda.device_count(), [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])"
} 2>&1 | tee -a "$out/1-gpus.txt"
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA device: nothing to check"; exit 1; }

step "2. pipeline throughput and memory layouts" | tee "$out/2-pipeline.txt"
timeout 300 "$py" benchmarks/pipeline.py --throughput-only 2>&1 | tee -a "$out/2-pipeline.txt"

step "3. a short CUDA suite, 1 and 2 workers on one GPU" | tee "$out/3-suite.txt"
cat > "$tmp/gpu_check.yaml" <<'YAML'
name: gpu-check
description: benchmarks/gpu_check.sh, a short CUDA suite
seeds: [0, 1, 2, 3]
base: {mode: sentiment, n_mels: 64, hop_length: 1024, n_fft: 2048, batch_size: 16, epochs: 5}
rows:
  - name: smallcnn
    config: {model: smallcnn}
  - name: resnet18
    config: {model: resnet18}
YAML
for w in 1 2; do
  d="$tmp/w$w"; mkdir -p "$d"
  t0=$(date +%s.%N)
  ( cd "$d" && CUDA_VISIBLE_DEVICES=0 timeout 300 "$py" -m harness suite run "$tmp/gpu_check.yaml" --workers "$w" \
      --tracking_uri "sqlite:///$d/mlflow.db" --out "$d/art" ) 2>&1 | tail -n 4 | tee -a "$out/3-suite.txt"
  t1=$(date +%s.%N)
  echo "workers $w: suite run wall $("$py" -c "print(round($t1 - $t0, 1))") s" | tee -a "$out/3-suite.txt"
  "$py" - "$d/mlflow.db" <<'PY' 2>&1 | tee -a "$out/3-suite.txt"
import statistics, sys
from mlflow.tracking import MlflowClient
c = MlflowClient(f"sqlite:///{sys.argv[1]}")
e = c.get_experiment_by_name("gpu-check")
runs = c.search_runs([e.experiment_id], "tags.`harness.kind` = 'cell'")
by = {}
for r in runs:
    t, m = r.data.tags, r.data.metrics
    by.setdefault(r.data.params["model"], []).append(r)
    print(f"  {t['harness.row']:<9} seed {t['harness.seed']}  {r.info.status:<8} device {t.get('harness.device')} "
          f"({t.get('harness.device_name')}), CUDA_VISIBLE_DEVICES {t.get('harness.cuda_visible_devices', '-')}, "
          f"worker_gpu {t.get('harness.worker_gpu', '-')}, layout {t.get('harness.memory_format')}, "
          f"wall {m.get('wall_time_s', float('nan')):.1f} s, cpu {m.get('cpu_time_s', float('nan')):.1f} s, "
          f"F1 {m.get('test_f1_macro', float('nan')):.3f}")
for model, rs in by.items():
    per_epoch = [r.data.metrics["wall_time_s"] / r.data.metrics["epochs_run"] for r in rs if "wall_time_s" in r.data.metrics]
    print(f"  {model}: median {statistics.median(per_epoch):.2f} s per epoch (cell wall / epochs) over {len(per_epoch)} cells")
PY
done

step "4. per-cell overhead with cells on the GPU" | tee "$out/4-overhead.txt"
timeout 300 "$py" benchmarks/overhead.py --quick 2>&1 | tee -a "$out/4-overhead.txt"
echo; echo "done $(date -Is); logs in $out"
