"""Scenarios on real LFW-dev faces with SFace: structure, known severities, and the defects they expose."""
from __future__ import annotations

import numpy as np
import pytest
from studies.scenarios import ScenarioSet, build_scenarios, scenario_metrics

from fiqa.core.errors import InvalidParameterError
from fiqa.label import create_labeler
from tolerances import UNIT_NORM


@pytest.fixture(scope="module")
def scenarios(lfw_dir) -> ScenarioSet:
    return build_scenarios(lfw_dir, n_cases=1, burst_size=5, n_poor=5, n_background=12, images_per_identity=3,
                           random_state=3)


@pytest.mark.lfw
def test_structure_and_known_severity(scenarios):
    s = scenarios
    assert s.vectors.shape == (len(s), 128) and s.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(s.vectors, axis=1), 1.0, rtol=0, atol=UNIT_NORM)
    counts = {role: int((s.role == role).sum()) for role in ("consistent", "burst", "good", "poor")}
    assert counts == {"consistent": 5, "burst": 5, "good": 1, "poor": 5}
    assert (s.severity[s.role == "burst"] == 0.8).all() and (s.kind[s.role == "burst"] == "blur").all()
    assert (s.severity[np.isin(s.role, ["consistent", "good"])] == 0).all()
    np.testing.assert_allclose(np.sort(s.severity[s.role == "poor"]), np.linspace(0.6, 0.9, 5))
    # bursts are near-duplicates; the good image differs from its class' poor shots
    burst = s.vectors[s.role == "burst"]
    assert (burst @ burst.T).min() > 0.85
    # degradation lowers SFace's raw norm: the burst's norm is below the clean burst's
    assert np.median(s.norms[s.role == "burst"]) < np.median(s.norms[s.role == "consistent"])
    assert s.meta["params"]["random_state"] == 3 and s.meta["embedder"]["backend"] == "sface"


@pytest.mark.lfw
def test_metrics_against_hand_computed_scores(scenarios):
    s = scenarios
    score = -s.severity.copy()  # an oracle: quality is exactly minus the severity
    metrics = scenario_metrics(score, s)
    assert metrics["good_rank_C"] == 1.0 and metrics["good_first_C"] == 1.0
    assert metrics["spearman_severity"] == pytest.approx(1.0)
    reversed_metrics = scenario_metrics(s.severity, s)
    assert reversed_metrics["good_rank_C"] == 6.0  # last of 1 good + 5 poor
    with pytest.raises(InvalidParameterError, match="'scores' parameter of scenario_metrics"):
        scenario_metrics(score[:-1], s)


@pytest.mark.lfw
def test_sdd_rates_the_burst_high_and_reference_consensus_does_not(scenarios):
    s = scenarios
    ids = s.identities.astype(str)
    sdd = scenario_metrics(create_labeler("sdd").fit(s.vectors, ids).labels_.score, s)
    new = scenario_metrics(create_labeler("reference-consensus").fit(s.vectors, ids, norms=s.norms).labels_.score, s)
    assert sdd["burst_percentile_B"] > 60
    assert new["burst_percentile_B"] < sdd["burst_percentile_B"] - 20
    assert new["spearman_severity"] > sdd["spearman_severity"]


def test_bad_parameters(tmp_path):
    with pytest.raises(InvalidParameterError, match="'burst_size' parameter of build_scenarios"):
        build_scenarios(tmp_path, burst_size=1)
    with pytest.raises(InvalidParameterError, match="'burst_kind' parameter of build_scenarios"):
        build_scenarios(tmp_path, burst_kind="smear")
