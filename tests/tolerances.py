"""Where the tests' numerical tolerances come from (docs/numerics.md lists every one).

Two float32 computations of the same quantity that sum in different orders (a banded and a one-pass scan, ONNX
Runtime and PyTorch, BLAS kernels of other CPUs or thread counts) differ by at most twice the classic rounding
bound of each (Higham, *Accuracy and Stability of Numerical Algorithms*, section 3.1):

    |fl(sum a_i b_i) - sum a_i b_i| <= gamma_n sum |a_i b_i|,    gamma_n = n u / (1 - n u),    u = 2**-24.

The helpers below turn that into the ``atol``/``rtol`` of an assertion, so each test states which computation it
bounds (``n``, the terms' magnitude) instead of a number that passed once. Exact cases (hand-computed float64
results of a few operations) keep tight float64 tolerances and say so where they are written. The production gates
use the same constants from :mod:`fiqa.core.numerics`.
"""
from __future__ import annotations

import numpy as np

from fiqa.core.numerics import U16, U32, U64, gamma

__all__ = ["U16", "U32", "U64", "cosine_bound", "dot_bound", "float32_ulps", "gamma", "two_paths"]


def dot_bound(n: int, magnitude: float | np.ndarray = 1.0, u: float = U32) -> float | np.ndarray:
    """``gamma_n * magnitude``: how far one computed sum of ``n`` terms with ``sum |terms| <= magnitude`` can be
    from the exact sum."""
    return gamma(n, u) * np.asarray(magnitude, np.float64)


def two_paths(n: int, magnitude: float | np.ndarray = 1.0, u: float = U32) -> float | np.ndarray:
    """How far two computations of the same sum (any orders) can be apart: twice :func:`dot_bound`."""
    return 2 * dot_bound(n, magnitude, u)


def cosine_bound(dim: int) -> float:
    """Two computations of the cosine similarity of two unit float32 vectors of ``dim`` values: a dot product of
    ``dim`` terms whose absolute values sum to at most 1 (Cauchy-Schwarz), computed twice."""
    return float(two_paths(dim, 1.0))


def float32_ulps(values: float | np.ndarray, count: int = 1) -> float | np.ndarray:
    """``count`` float32 units in the last place of ``|values|`` (the spacing of float32 numbers there): the
    tolerance of a float32 result that is correctly rounded in each path but may be rounded once more in one."""
    return count * np.spacing(np.abs(np.asarray(values, np.float32))).astype(np.float64)
