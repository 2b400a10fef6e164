#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite; then the numerical tests (marker `numerics`) a second time
# under another BLAS and onnxruntime threading setting, so a tolerance tuned to one kernel fails here, not on a
# user's machine (docs/numerics.md). Arguments go to the first, whole-suite run only.
#   first run:  the environment as it is (OpenBLAS and onnxruntime defaults: all cores; OPENBLAS_CORETYPE as set)
#   second run: OPENBLAS_NUM_THREADS=1, FIQA_ORT_THREADS=1, and OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE flipped
#               (unset when set; when unset on x86-64, Haswell with AVX2, else Prescott), so another kernel family
#               runs; on x86-64 OpenCV's and numpy's dispatched kernels are held below AVX2 too (OPENCV_CPU_DISABLE:
#               OpenCV's AVX code; NPY_DISABLE_CPU_FEATURES: numpy's baseline; what an older CPU runs; OpenCV's
#               detector moves a landmark by 3e-5 px there, which a test built on stored scores must allow for)
# FIQA_SKIP_NUMERICS_RERUN=1 skips the second run (e.g. when running one test file by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
status=0
.venv/bin/python -m pytest "$@" || status=$?
# 5: no tests collected (e.g. a -k that matches nothing) is a failure of the command, not a pass
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 5 ] && echo "scripts/test.sh: pytest collected no tests" >&2
  exit "$status"
fi
if [ "${FIQA_SKIP_NUMERICS_RERUN:-0}" = 1 ] || [ "$#" -gt 0 ]; then
  exit 0  # a hand-picked run (arguments given) is not repeated
fi
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  flip=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
  described="OPENBLAS_CORETYPE unset"
elif [ "$(uname -m)" = x86_64 ]; then
  core=Prescott
  grep -qw avx2 /proc/cpuinfo 2>/dev/null && core=Haswell
  flip=(env OPENBLAS_CORETYPE=$core)
  described="OPENBLAS_CORETYPE=$core"
else
  flip=(env)
  described="OPENBLAS_CORETYPE as it is (no other kernel family to name on $(uname -m))"
fi
if [ "$(uname -m)" = x86_64 ]; then
  # numpy names its own dispatchable features (they differ between numpy versions); held to its baseline
  npy_dispatch=$(.venv/bin/python -c "from numpy._core._multiarray_umath import __cpu_dispatch__; print(' '.join(__cpu_dispatch__))" 2>/dev/null \
    || .venv/bin/python -c "from numpy.core._multiarray_umath import __cpu_dispatch__; print(' '.join(__cpu_dispatch__))") \
    || { echo "scripts/test.sh: cannot read numpy's list of dispatched CPU features" >&2; exit 1; }
  flip+=(OPENCV_CPU_DISABLE=AVX512-SKX,AVX2,FP16 "NPY_DISABLE_CPU_FEATURES=$npy_dispatch")
  described="$described, OpenCV's and numpy's kernels held below AVX2"
fi
echo "scripts/test.sh: numerics tests again with 1 BLAS thread, 1 onnxruntime thread, $described"
status=0
"${flip[@]}" OPENBLAS_NUM_THREADS=1 FIQA_ORT_THREADS=1 .venv/bin/python -m pytest -q -m numerics -p no:cacheprovider \
  || status=$?
if [ "$status" -eq 5 ]; then
  echo "scripts/test.sh: no test carries the numerics marker; the second setting tested nothing" >&2
fi
exit "$status"
