"""Run several ``fiqa`` commands in one interpreter (click's CliRunner) and write what each did as JSON.

``python _batch.py REQUESTS.json ANSWERS.json``: REQUESTS is a list of argument lists; ANSWERS gets, per command,
``{"code", "output", "traceback"}``. Used to run the permission cases without DAC capabilities in one child
process (see ``harness.batch_unprivileged``).
"""
from __future__ import annotations

import json
import sys
import traceback


def main(requests: str, answers: str) -> None:
    from click.testing import CliRunner

    from fiqa.cli import main as fiqa

    results = []
    with open(requests, encoding="utf-8") as handle:
        commands = json.load(handle)
    for argv in commands:
        result = CliRunner().invoke(fiqa, argv, catch_exceptions=True)
        escaped = None
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            escaped = "".join(traceback.format_exception(*result.exc_info))
        results.append({"code": result.exit_code, "output": result.output, "traceback": escaped})
    with open(answers, "w", encoding="utf-8") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
