#!/usr/bin/env bash
# Build the wheel and install it, with NO extras, into a fresh venv in /tmp (dependencies from the package
# registry); then check that the base install scores a photo, that PyTorch, SciPy, scikit-learn and matplotlib are
# really absent, and that training and evaluation say which extra to install instead of a traceback. Prints the
# size of the fresh venv.
#   bash scripts/check_wheel.sh [PHOTO]      (default: the first photo of $FIQA_LFW or ../shared/data/lfw-dev)
# Set KEEP=1 to keep the work folder. Exit status 0 when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d /tmp/fiqa-wheel.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

photo=${1:-}
if [ -z "$photo" ]; then
  lfw=${FIQA_LFW:-../shared/data/lfw-dev}
  photo=$(find "$lfw" -name '*.jpg' 2>/dev/null | sort | head -n 1 || true)
fi
[ -f "$photo" ] || fail "no photo to score (give one, or set FIQA_LFW)"
photo=$(cd "$(dirname "$photo")" && pwd)/$(basename "$photo")

echo "== build (a copy of the working tree, so no build/ folder is left here)"
mkdir "$work/tree"
tar -cf - --exclude=__pycache__ --exclude='*.egg-info' pyproject.toml README.md LICENSE src | tar -xf - -C "$work/tree"
"$PY" -m pip wheel -q --no-deps -w "$work/dist" "$work/tree"
wheel=$(ls "$work"/dist/fiqa-*.whl)
echo "$(basename "$wheel"): $(du -k "$wheel" | cut -f1) KiB"
"$PY" - "$wheel" <<'EOF' || fail "the wheel lacks a file it must ship"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = {"LICENSE": "/licenses/LICENSE", "py.typed": "fiqa/py.typed", "default model head": "fiqa/score/default/head.onnx",
        "default model card": "fiqa/score/default/card.json"}
missing = [what for what, suffix in need.items() if not any(n.endswith(suffix) for n in names)]
print("ships: " + ", ".join(need) if not missing else "missing: " + ", ".join(missing))
sys.exit(1 if missing else 0)
EOF

echo "== fresh venv, pip install the wheel (no extras)"
"$PY" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel" 2>&1 | grep -v "is ignored: it is neither" || true
"$work/venv/bin/python" -c "import fiqa" || fail "fiqa does not import"
"$work/venv/bin/python" -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^(fiqa|numpy|onnxruntime|opencv|pyarrow|torch|scipy|scikit-learn|matplotlib)=' || true
echo "venv size: $(du -sh "$work/venv" | cut -f1)"

cd "$work"  # away from the source tree: only the installed wheel can be imported
echo "== fiqa score $photo"
line=$("$work/venv/bin/fiqa" score "$photo")
echo "$line"
score=$(printf '%s\n' "$line" | cut -f2)
status=$(printf '%s\n' "$line" | cut -f3)
[ "$status" = ok ] || fail "status $status"
"$work/venv/bin/python" -c "import sys; s = float(sys.argv[1]); sys.exit(0 if 0 <= s <= 100 else 1)" "$score" \
  || fail "score $score is not in [0, 100]"

echo "== python -c 'import torch' (and scipy, sklearn, matplotlib: each must fail)"
for module in torch scipy sklearn matplotlib; do
  if "$work/venv/bin/python" -c "import $module" 2>/dev/null; then fail "$module is installed by the base install"; fi
done
echo "torch, scipy, sklearn, matplotlib: not installed (ok)"

# expect_extra EXTRA ARGS...: fiqa ARGS without the extra must name it, exit 1, no traceback
expect_extra() {
  local extra=$1 message code
  shift
  set +e
  message=$("$work/venv/bin/fiqa" "$@" 2>&1)
  code=$?
  set -e
  echo "exit $code: $message"
  [ "$code" = 1 ] || fail "exit status $code"
  case "$message" in *Traceback*) fail "a traceback" ;; esac
  case "$message" in *"pip install 'fiqa[$extra]'"*) ;; *) fail "the message does not name pip install 'fiqa[$extra]'" ;; esac
}

echo "== fiqa train without torch (must name the extra, exit 1, no traceback)"
mkdir store && : > labels.parquet
expect_extra train train store labels.parquet -o model

echo "== fiqa evaluate without the eval extra (must name it, exit 1, no traceback)"
expect_extra eval evaluate store --scores labels.parquet -o report

echo "== fiqa --help"
"$work/venv/bin/python" - "$work/venv/bin/fiqa" <<'EOF'
import subprocess, sys, time
start = time.perf_counter()
subprocess.run([sys.argv[1], "--help"], check=True, stdout=subprocess.DEVNULL)
print(f"fiqa --help: {time.perf_counter() - start:.2f} s (one run)")
EOF
echo "check_wheel: all checks passed"
