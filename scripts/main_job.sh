#!/usr/bin/env bash
# The README's main job.
# On a fresh machine, with no arguments: set up the venv, build the sample bag, start the depth
# node (TT where a card is found, else OpenVINO or torch on the CPU; weights auto =
# Intel/dpt-large from the HF cache/hub, else RANDOM weights, said in the log and at the top of
# the report), replay the bag through it over loopback DDS, write the report, and print where
# it is.
# Environment knobs: DPT_ROS_OUT (output dir), DPT_ROS_WEIGHTS (default auto),
# DPT_ROS_FRAMES (sample bag frames, default 30), DPT_ROS_TT_DEVICE / DPT_ROS_TT_DP,
# DPT_ROS_DTYPE (CPU compute dtype, default auto: bf16 where the CPU has bf16 units, else fp32).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${DPT_ROS_OUT:-$root/generated/main_job}
weights=${DPT_ROS_WEIGHTS:-auto}
frames=${DPT_ROS_FRAMES:-30}
dtype=${DPT_ROS_DTYPE:-auto}
case "$dtype" in
  auto|fp32|bf16) ;;
  *) echo "main_job: DPT_ROS_DTYPE must be auto, fp32 or bf16, not '$dtype'" >&2; exit 2 ;;
esac

# 1. Set-up (idempotent; prints the venv path on its last line).
venv=$(scripts/setup_env.sh | tail -n 1)
py=$venv/bin/python

# 2. The sample bag: skimage pictures + Middlebury Motorcycle with metric ground truth, 30 Hz.
mkdir -p "$out"
"$py" -m dpt_ros.sample_bag "$out/sample_bag" --frames "$frames" --overwrite

# 3. Backend: TT when a Tenstorrent card is visible; otherwise OpenVINO on the CPU where
#    openvino is importable (the fastest CPU backend, docs/benchmarks.md), else torch. dtype
#    auto: bf16 where the CPU runs it natively (avx512_bf16 / AMX), fp32 elsewhere (bf16
#    without bf16 units is several times slower in torch and not run at all by OpenVINO). The
#    node falls back to torch on the CPU by itself (counted, diagnostics WARN) if the card or
#    OpenVINO cannot start.
if "$py" -c 'import openvino' 2>/dev/null; then
  cpu=openvino
  cpu_backend='OpenVINO'
else
  cpu=torch
  cpu_backend='torch (openvino is not importable)'
fi
backend=(--backend "$cpu" --device cpu --dtype "$dtype")
precision=$("$py" -c 'import sys; from dpt_ros.backends.precision import summary
print(summary(*sys.argv[1:]))' "$cpu" "$dtype")
if compgen -G '/dev/tenstorrent/*' >/dev/null; then
  backend=(--backend tt --device "${DPT_ROS_TT_DEVICE:-wormhole_n300}"
           --dp "${DPT_ROS_TT_DP:-2}" --execution-mode trace_2cq)
  echo "main_job: Tenstorrent card found: ${backend[*]}"
else
  echo "main_job: no Tenstorrent card found: $cpu_backend on the CPU (DPT-Large takes a large" \
       "fraction of a second per frame here, so most frames of a 30 Hz replay are dropped;" \
       "the report shows how many)"
  echo "main_job: CPU precision: $precision"
fi

# 4. DDS stays on this host, in a domain of its own.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((1 + $$ % 100))}
export ROS_LOG_DIR=${ROS_LOG_DIR:-$out/ros_log}

# 5. Start the node with the package's params file, replay the bag through it, write the report.
#    bag_eval exits non-zero only when nothing could be evaluated. The first OpenVINO start
#    converts DPT-Large once (about a minute on 2 cores, cached after): wait up to 5 minutes.
"$py" -m dpt_ros.bag_eval replay "$out/sample_bag" --start-node \
  --params-file "$root/config/dpt.yaml" --weights "$weights" "${backend[@]}" \
  --wait-node-s 300 --output "$out/report"

echo "main_job: report: $out/report/report.html"
