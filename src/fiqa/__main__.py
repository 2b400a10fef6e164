"""``python -m fiqa``: the same as the ``fiqa`` command."""
from fiqa.cli import main

main()
