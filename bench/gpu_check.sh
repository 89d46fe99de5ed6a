#!/usr/bin/env bash
# The CUDA path, checked on a machine with a GPU (CI has none). Run from the repository root:
#   bash bench/gpu_check.sh [OUT_DIR]            # issue 18: CUDA graphs, CUDA defaults, bench.gpu (< 8 min)
#   CHECKS=all bash bench/gpu_check.sh [OUT_DIR] # also the earlier checks (precision, compile, DDP, export, ...)
# Each step prints "CHECK <name>: ok|FAILED"; the benchmarks print their own numbers.
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0

check() {  # check NAME COMMAND...: run it with a time limit, keep its output, say ok or FAILED
    local name=$1; shift
    if timeout 240 "$@" >"$out/$name.log" 2>&1; then echo "CHECK $name: ok"; else
        echo "CHECK $name: FAILED ($?)"; tail -n 15 "$out/$name.log"; status=1; fi
}

$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
dl="$py -m dltrain"
mlp=configs/digits_mlp.yaml
same="$py bench/gpu_same.py"  # same RUN_A RUN_B RTOL: the runs' history.csv losses agree

# --- issue 18: fit.cuda_graphs and the CUDA defaults --------------------------------------------
check graphs_on $dl fit $mlp --device cuda --set fit.cuda_graphs=true --set fit.epochs=5 --run-dir "$work/g"
grep -a "CUDA" "$out/graphs_on.log"
grep -aq "capturing the training step failed" "$out/graphs_on.log" && { echo "CHECK graphs_captured: FAILED"; status=1; }
check graphs_vs_eager bash -c "$dl fit $mlp --device cuda --set fit.cuda_graphs=false --set fit.epochs=5 \
  --run-dir $work/e && $same $work/g $work/e 1e-3"
tail -n 2 "$out/graphs_vs_eager.log"
hard="--set fit.accumulate_grad_batches=3 --set fit.gradient_clip=0.5 --set fit.precision=bf16-mixed --set fit.epochs=4"
check graphs_accumulate_clip_bf16_schedule bash -c "$dl fit $mlp --device cuda $hard --set fit.cuda_graphs=true \
  --set 'compile.lr_schedule={type: cosine, warmup_epochs: 1}' --run-dir $work/gh &&
  $dl fit $mlp --device cuda $hard --set fit.cuda_graphs=false --set 'compile.lr_schedule={type: cosine, warmup_epochs: 1}' \
  --run-dir $work/eh && $same $work/gh $work/eh 1e-2"
tail -n 2 "$out/graphs_accumulate_clip_bf16_schedule.log"
check graphs_resume bash -c "$dl fit configs/digits_dropout.yaml --device cuda --set fit.cuda_graphs=true --set fit.epochs=2 \
  --run-dir $work/r && $dl fit --resume $work/r --set fit.epochs=4 &&
  $dl fit configs/digits_dropout.yaml --device cuda --set fit.cuda_graphs=true --set fit.epochs=4 --run-dir $work/u &&
  $same $work/r $work/u 1e-5"
tail -n 2 "$out/graphs_resume.log"
check graphs_nan_guard bash -c "$dl fit $mlp --device cuda --set fit.cuda_graphs=true --set 'compile.optimizer={type: sgd, lr: 1.0e+30}' \
  --set fit.epochs=2 --run-dir $work/nan > $work/nan.log 2>&1; test \$? -eq 1 && ! grep -q Traceback $work/nan.log && grep -a 'loss became' $work/nan.log"
tail -n 1 "$out/graphs_nan_guard.log"
check auto_cnn_channels_last $dl fit configs/digits_cnn.yaml --device cuda --set fit.epochs=3 --run-dir "$work/cnn"
grep -a "CUDA" "$out/auto_cnn_channels_last.log"
check refuse_16_mixed bash -c "$dl check $mlp --device cuda --set fit.cuda_graphs=true --set fit.precision=16-mixed; test \$? -eq 2"
grep -a "cuda_graphs" "$out/refuse_16_mixed.log"
check image_folder_nvjpeg bash -c "$py bench/gpu_same.py --jpegs $work/jpegs && $dl fit configs/image_folder_cnn.yaml \
  --device cuda --set data.path=$work/jpegs --set fit.epochs=2 --run-dir $work/img"
grep -a "CUDA\|Final test" "$out/image_folder_nvjpeg.log"
$py -m bench.gpu --device cuda --seconds 0.5 --budget ${BENCH_BUDGET:-150} 2>"$out/bench_gpu.log" | tee "$out/bench_gpu.md" || status=1
[[ ${CHECKS:-} == all ]] || exit $status

# --- the earlier checks --------------------------------------------------------------------------
check fit_cuda $dl fit configs/digits_mlp.yaml --device cuda --run-dir "$work/mlp"
grep -a "Final test" "$out/fit_cuda.log"
check evaluate_cuda_and_cpu bash -c "$py -m dltrain evaluate $work/mlp/best.pt --device cuda --json > $work/gpu.json &&
  $py -m dltrain evaluate $work/mlp/best.pt --device cpu --json > $work/cpu.json &&
  $py -c \"import json; a, b = (json.load(open('$work/' + n + '.json')) for n in ('gpu', 'cpu'));
print('test accuracy cuda', a['accuracy'], 'cpu', b['accuracy']); assert abs(a['accuracy'] - b['accuracy']) < 1e-9\""
for precision in bf16-mixed 16-mixed; do
  check "cnn_$precision" $dl fit configs/digits_cnn.yaml --device cuda --set fit.precision=$precision --set fit.epochs=8 --run-dir "$work/cnn-$precision"
  grep -a "Final test" "$out/cnn_$precision.log"
done
check compile_model $dl fit configs/digits_cnn.yaml --device cuda --set fit.compile_model=true --set fit.epochs=3 --run-dir "$work/compiled"
grep -a -i "compile\|Final test" "$out/compile_model.log" | head -3
check resume_cuda bash -c "$py -m dltrain fit configs/digits_mlp.yaml --device cuda --set fit.epochs=2 --run-dir $work/resume &&
  $py -m dltrain fit --resume $work/resume --set fit.epochs=4"
check ddp_nccl $py -m torch.distributed.run --standalone --nproc-per-node 1 -m dltrain fit configs/digits_cnn.yaml \
  --device cuda --set fit.strategy=ddp --set fit.epochs=3 --run-dir "$work/ddp"
grep -a "Final test\|nccl\|NCCL" "$out/ddp_nccl.log" | head -3
check vgg16_cached $dl fit configs/digits_vgg16.yaml --device cuda --set fit.epochs=3 --run-dir "$work/vgg"
grep -a "computed once\|Final test" "$out/vgg16_cached.log" | head -2
check export_onnx $dl export "$work/mlp/best.pt" --format onnx -o "$work/mlp.onnx"
check export_pt2 $dl export "$work/cnn-bf16-mixed/best.pt" --format pt2 -o "$work/cnn.pt2"
benches=${BENCHES:-digits_epoch npz_dense feature_cache}  # which benchmarks to run after the checks
[[ " $benches " == *" digits_epoch "* ]] && $py -m bench.digits_epoch --device cuda --epochs 15 2>&1 | tail -1
[[ " $benches " == *" npz_dense "* ]] && $py -m bench.npz_dense --device cuda --repeats 3 2>&1 | tail -4
[[ " $benches " == *" feature_cache "* ]] && $py -m bench.feature_cache --device cuda --epochs 3 2>&1 | tail -4
exit $status
