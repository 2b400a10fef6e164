"""Replay of the hostile cases of ../shared/hostile-cases.md (run by scripts/hostile.sh)."""
