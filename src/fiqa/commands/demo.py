"""``fiqa demo``: the whole pipeline on LFW, ending in an HTML report."""
from __future__ import annotations

import click

from fiqa.commands._common import check_out, info, out_option, progress, require_extra


@click.command("demo")
@click.argument("lfw", required=False, type=click.Path(file_okay=False))
@out_option("Output folder; a re-run reuses the finished stages.", required=False, dest="out_dir",
            default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--method", "labellers", multiple=True,
              help="Labelling method evaluated on each test set, as in 'fiqa label --method' (repeat for several; "
                   "default: fiqa.demo.DEFAULT_LABELLERS, i.e. sdd, sdd-refined, cr and reference-consensus).")
@click.option("--baseline", "baselines", multiple=True,
              help="Method evaluated as labels only (repeat for several; default: fiqa.demo.DEFAULT_BASELINES, i.e. "
                   "mean-positive; random is always added).")
@click.option("--training-free", "training_free", multiple=True,
              help="Training-free method scored per image and timed on each test set (repeat for several; default: "
                   "fiqa.demo.DEFAULT_TRAINING_FREE, i.e. ser-fiq, flip-consistency and norm).")
@click.option("--serfiq-samples", type=int, default=100, show_default=True,
              help="SER-FIQ's stochastic embeddings per face.")
@click.option("--test-fraction", type=float, default=0.5, show_default=True,
              help="Fraction of identities held apart from labelling-for-training and training.")
@click.option("--min-images", type=int, default=2, show_default=True, help="Leave out people with fewer photos.")
@click.option("--max-identities", type=int, default=None, help="A seeded subset of people (quick runs).")
@click.option("--max-images-per-identity", type=int, default=None, help="A seeded subset of each person's photos.")
@click.option("--epochs", type=int, default=30, show_default=True, help="Maximum epochs per regressor.")
@click.option("--max-mated-per-identity", type=int, default=50, show_default=True,
              help="Cap on mated comparisons per identity in the evaluation.")
@click.option("--n-bootstrap", type=int, default=1000, show_default=True,
              help="Identity resamples for the 95 % pAUC intervals (0: none).")
@click.option("--random-state", type=int, default=0, show_default=True)
def command(lfw, out_dir, labellers, baselines, training_free, serfiq_samples, test_fraction, min_images,
            max_identities, max_images_per_identity, epochs, max_mated_per_identity, n_bootstrap, random_state) -> None:
    """Embed LFW, train the default quality model and v0.1's plain head on half the identities, and evaluate both
    beside the labels (sdd, sdd-refined, cr, reference-consensus), the baselines and the training-free methods
    (ser-fiq, flip-consistency, norm; timed per image) on the other half, natural and with capture effects no
    training recipe draws.

    LFW is the folder given, else $FIQA_LFW (scripts/demo.sh sets it to the checkout's shared data). Needs
    PyTorch and the evaluation extra: pip install 'fiqa[train,eval]'.
    """
    import os

    check_out(out_dir, lfw or os.environ.get("FIQA_LFW"))  # before any work: never the photos or inside them
    require_extra("fiqa demo", "train", "eval")
    import numpy as np

    from fiqa.demo import DEFAULT_BASELINES, DEFAULT_LABELLERS, DEFAULT_TRAINING_FREE, run_demo

    result = run_demo(lfw, out_dir, labellers=labellers or DEFAULT_LABELLERS,
                      baselines=baselines or DEFAULT_BASELINES, training_free=training_free or DEFAULT_TRAINING_FREE,
                      serfiq_samples=serfiq_samples, test_fraction=test_fraction, min_images=min_images,
                      max_identities=max_identities, max_images_per_identity=max_images_per_identity, epochs=epochs,
                      max_mated_per_identity=max_mated_per_identity, n_bootstrap=n_bootstrap, random_state=random_state,
                      progress=progress())
    width = max(len(row["method"]) for row in result.summary)
    for set_name in ("natural", "degraded"):
        info("")
        info(f"EDC on held-apart identities, {set_name} (FMR 1e-3, FNMR pAUC up to 0.20; lower is better):")
        info(f"  {'method':<{width}}  {'pAUC':>10}  {'95% interval':>21}  {'Spearman vs labels':>18}  "
             f"{'ms per image':>12}")
        for row in (r for r in result.summary if r["set"] == set_name):
            rho, cost = row["spearman_with_test_labels"], row.get("seconds_per_image")
            interval = "" if not np.isfinite(row.get("pauc_ci_low", np.nan)) else \
                f"[{row['pauc_ci_low']:.3g}, {row['pauc_ci_high']:.3g}]"
            cost_text = "" if cost is None else format(cost * 1e3, ".1f")
            info(f"  {row['method']:<{width}}  {row['fnmr_pauc']:>10.3g}  {interval:>21}  "
                 f"{'' if rho is None else format(rho, '.3f'):>18}  {cost_text:>12}")
    info("")
    info(f"Reports: {result.report.resolve()}")
    info(f"         {result.degraded_report.resolve()}")
