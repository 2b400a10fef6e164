#!/usr/bin/env bash
# Replay the hostile cases of ../shared/hostile-cases.md (tests/hostile/) and print one row per case ID with its
# verdict (GOOD / NOTE / BAD / SKIP), then the counts. Extra arguments go to pytest (e.g. -k E1 or -m "not slow").
# Exit status: non-zero when a case is BAD or has no check.
set -uo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
[ -x "$python" ] || python="python3"
results="$(mktemp "${TMPDIR:-/tmp}/fiqa-hostile.XXXXXX.json")"
trap 'rm -f "$results"' EXIT
FIQA_HOSTILE_RESULTS="$results" "$python" -m pytest tests/hostile -q -p no:cacheprovider "$@"
tests=$?
echo
"$python" tests/hostile/report.py "$results"
table=$?
if [ "$tests" -ne 0 ] && [ "$tests" -ne 1 ]; then exit "$tests"; fi  # pytest itself failed (usage, collection)
exit "$table"
