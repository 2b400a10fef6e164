"""``fiqa evaluate STORE --scores TABLE [--scores TABLE ...] -o REPORT_DIR``: EDC report of quality tables."""
from __future__ import annotations

import logging
from typing import Literal

import click

from fiqa.commands._common import info, out_option, progress, require_extra

logger = logging.getLogger(__name__)


@click.command("evaluate")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--scores", "score_paths", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A labels or scores table (Parquet from 'fiqa label' / 'fiqa score'); repeat for several. "
                   "'random' is always added as the floor.")
@out_option("Report folder (report.html, edc.csv/json, PNG plots, legacy_erc.*).", dest="out_dir",
            type=click.Path(file_okay=False))
@click.option("--fmr", type=float, default=1e-3, show_default=True,
              help="Fix the threshold where the non-mated comparisons reach this FMR.")
@click.option("--start-fnmr", type=float, default=None,
              help="Instead fix the threshold so that the starting FNMR is this value.")
@click.option("--discard-limit", type=float, default=0.2, show_default=True, help="Upper end of the pAUC.")
@click.option("--pairs", "pairs_path", type=click.Path(dir_okay=False), default=None,
              help="Compare these pairs (LFW pairs.txt, or CSV sample_a,sample_b,mated) instead of sampling.")
@click.option("--max-mated", type=int, default=200_000, show_default=True,
              help="Use all mated pairs up to this many, else a seeded sample of this size.")
@click.option("--max-mated-per-identity", type=int, default=None,
              help="At most this many mated pairs per identity (seeded), so large identities do not dominate FNMR.")
@click.option("--n-nonmated", type=int, default=1_000_000, show_default=True,
              help="Seeded sample of distinct non-mated pairs.")
@click.option("--random-state", type=int, default=0, show_default=True,
              help="Seed of pair sampling and the random floor.")
@click.option("--identities-from", type=click.Path(dir_okay=False), default=None,
              help="Evaluate only these identities: a text file (one per line) or a split JSON (its 'test' part).")
@click.option("--exclude-identities", type=click.Path(dir_okay=False), default=None,
              help="Leave out these identities: a text file or a split JSON (its 'train' part).")
@click.option("--missing", type=click.Choice(["lowest", "exclude"]), default="lowest", show_default=True,
              help="Samples without a quality: rank them lowest, or leave out their pairs for every method.")
@click.option("--legacy-erc/--no-legacy-erc", default=True, show_default=True,
              help="Also write the legacy ERC (threshold recomputed per discard level), kept apart from the EDC.")
@click.option("--gallery-size", type=int, default=8, show_default=True, help="Faces per gallery strip.")
@click.option("--n-bootstrap", type=int, default=1000, show_default=True,
              help="Identity resamples for the 95% intervals of the FNMR pAUCs (threshold fixed; seeded by "
                   "--random-state); 0 disables them.")
@click.option("--force", is_flag=True,
              help="Evaluate tables that record another store's fingerprint (e.g. the same images embedded again); "
                   "warns. Tables whose image locations differ are refused all the same.")
@click.option("--comparison-store", type=click.Path(file_okay=False), default=None,
              help="Take the comparison scores from this store: the same images embedded by another recogniser "
                   "(matched by location; refused when a compared image is missing there; pairs with an image "
                   "that failed there are left out and counted). The --scores tables stay tables of STORE.")
@click.option("--more-fmr", "more_fmrs", type=float, multiple=True,
              help="A further target FMR whose threshold gives a further EDC beside --fmr (repeat for several; "
                   "default 1e-4; skipped when the non-mated comparisons cannot resolve it).")
@click.option("--group-by", default=None,
              help="Break the evaluation down by this column: identity, location, file, degradation (of degraded "
                   "copies), a column of a --scores table, or the group column of --groups-file.")
@click.option("--groups-file", type=click.Path(exists=True), default=None,
              help="Groups from a side table: a CSV with a sample_id, location or file column and the --group-by "
                   "column, or a folder of <group>_names.txt lists of image file names (e.g. "
                   "../shared/data/lfw-gender).")
@click.option("--reject-quantile", "reject_quantiles", type=float, multiple=True,
              help="Quality quantile at which per-group reject rates and the FNMR after rejection are reported "
                   "(repeat for several; default 0.05, 0.1 and 0.2).")
@click.option("--components", "with_components", is_flag=True,
              help="Also evaluate each quality component (`fiqa components`) of the compared faces, measured from "
                   "STORE's crops and landmarks: one EDC row per component, to see which factor predicts "
                   "recognition failure on this data (none is a unified quality).")
def command(store: str, score_paths: tuple[str, ...], out_dir: str, fmr: float, start_fnmr: float | None,
            discard_limit: float, pairs_path: str | None, max_mated: int, max_mated_per_identity: int | None,
            n_nonmated: int, random_state: int,
            identities_from: str | None, exclude_identities: str | None, missing: Literal["lowest", "exclude"],
            legacy_erc: bool,
            gallery_size: int, n_bootstrap: int, force: bool, comparison_store: str | None,
            more_fmrs: tuple[float, ...], group_by: str | None, groups_file: str | None,
            reject_quantiles: tuple[float, ...], with_components: bool) -> None:
    """Error-versus-Discard (EDC) evaluation of quality tables on the comparisons of STORE.

    Needs the evaluation extra: pip install 'fiqa[eval]'.
    """
    if groups_file and not group_by:
        raise click.UsageError("--groups-file needs --group-by (the group column; any name for a folder of lists)")
    require_extra("fiqa evaluate", "eval")
    from fiqa.evaluate.pipeline import evaluate_store

    done = evaluate_store(store, score_paths, out_dir, fmr=fmr, start_fnmr=start_fnmr, discard_limit=discard_limit,
                          pairs=pairs_path, max_mated=max_mated, max_mated_per_identity=max_mated_per_identity,
                          n_nonmated=n_nonmated, random_state=random_state, identities_from=identities_from,
                          exclude_identities=exclude_identities, missing=missing, legacy_erc=legacy_erc,
                          gallery_size=gallery_size, n_bootstrap=n_bootstrap, force=force,
                          comparison_store=comparison_store, more_fmrs=more_fmrs or (1e-4,), group_by=group_by,
                          groups_file=groups_file, reject_quantiles=reject_quantiles or (0.05, 0.1, 0.2),
                          components=with_components, progress=progress())
    evaluation, page = done.evaluation, done.report
    recognisers = evaluation.meta["recognisers"]
    if comparison_store:
        left_out = recognisers["rescored"]["n_pairs_left_out"]
        info(f"comparison scores: {recognisers['comparison']['backend']} ({comparison_store}); quality tables of "
             f"{recognisers['quality']['backend']} ({store}); {left_out:,} pairs left out (an image failed in "
             f"{comparison_store})")
    rows = evaluation.edc.table()
    width = max(len(row["method"]) for row in rows)
    info(f"EDC at a threshold of {evaluation.edc.threshold:.4f} ({evaluation.edc.n_mated:,} mated, "
         f"{evaluation.edc.n_nonmated:,} non-mated comparisons); FNMR pAUC up to {discard_limit:g}, "
         f"lower is better{' (95% bootstrap intervals over identities)' if n_bootstrap else ''}:")
    for row in rows:
        interval = f"[{row['pauc_ci_low']:.3g}, {row['pauc_ci_high']:.3g}]" if n_bootstrap else ""
        info(f"  {row['method']:<{width}}  pAUC {row['fnmr_pauc']:<10.3g}{interval:<20} minus best "
             f"{row['fnmr_pauc_minus_best']:<10.3g} FNMR after {discard_limit:g} discarded "
             f"{row['fnmr_at_limit']:.3g}")
    info(f"report: {page}")
