"""``fiqa verify STORE``: mean mated / non-mated cosine similarity and ROC AUC of an embedding store."""
from __future__ import annotations

import json

import click

from fiqa.commands._common import require_extra


@click.command("verify")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--n-nonmated", "n_nonmated", type=int, default=200_000, show_default=True,
              help="Non-mated pairs to sample.")
@click.option("--max-mated", type=int, default=1_000_000, show_default=True,
              help="Use all mated pairs up to this many, else a seeded sample of this size.")
@click.option("--random-state", type=int, default=0, show_default=True, help="Seed of the pair samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def command(store: str, n_nonmated: int, max_mated: int, random_state: int, as_json: bool) -> None:
    """Print verification sanity figures of STORE (expect ROC AUC > 0.99 for a good recogniser).

    Needs the evaluation extra: pip install 'fiqa[eval]'.
    """
    require_extra("fiqa verify", "eval")
    from fiqa.evaluate.verify import verification_summary
    from fiqa.store import open_store

    summary = verification_summary(open_store(store), n_nonmated=n_nonmated, max_mated=max_mated,
                                   random_state=random_state)
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.format())
