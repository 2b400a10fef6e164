"""Why a capture is poor: per-face quality components and advice, in the spirit of ISO/IEC 29794-5.

The stage sits after detection (it reads the aligned crop, the five landmarks, the boxes and the face region at the
photo's pixel grid) and before scoring, which adds its columns beside the score (``fiqa score --components``)::

    table = compute_components(crops, faces)             # ComponentTable: raw values, 0-100 scalars, reasons
    codes = advise(table, load_profile())                 # [["too_dark", "blurred"], [], ...]
    ADVICE["too_dark"]                                    # one line of English per code

Every component (:data:`COMPONENTS`) has a raw value in physical units and a 0-100 scalar, higher is better
(documented mapping per component); none is a unified quality. docs/components.md says how each is measured and
validated.
"""
from __future__ import annotations

from fiqa.components.advice import ADVICE, AdviceProfile, AdviceRule, ProfileError, advise, load_profile
from fiqa.components.base import Component
from fiqa.components.geometry import DEFAULT_REFINEMENT_PASSES, FaceGeometry, fit_pose
from fiqa.components.measure import COMPONENTS, ComponentTable, compute_components, describe_components

__all__ = ["ADVICE", "COMPONENTS", "DEFAULT_REFINEMENT_PASSES", "AdviceProfile", "AdviceRule", "Component",
           "ComponentTable", "FaceGeometry", "ProfileError", "advise", "compute_components", "describe_components",
           "fit_pose", "load_profile"]
