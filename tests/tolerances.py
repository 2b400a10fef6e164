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

__all__ = ["SAME_GRAPH_RTOL", "SAME_GRAPH_SCORE", "U16", "U32", "U64", "UNIT_NORM", "UNIT_VECTOR_PATHS",
           "assert_within", "cosine_bound", "dot_bound", "float32_ulps", "gamma", "two_paths"]


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


def assert_within(actual: object, desired: object, bound: object, what: str = "values") -> None:
    """``|actual - desired| <= bound`` elementwise (``bound`` may differ per element; NaN must meet NaN), with a
    message naming the worst element and its bound."""
    actual_values, desired_values = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    shape = np.broadcast_shapes(actual_values.shape, desired_values.shape)
    actual_values, desired_values = np.broadcast_to(actual_values, shape), np.broadcast_to(desired_values, shape)
    bounds = np.broadcast_to(np.asarray(bound, np.float64), shape)
    difference = np.abs(actual_values - desired_values)
    both_nan = np.isnan(actual_values) & np.isnan(desired_values)
    bad = ~(both_nan | (difference <= bounds))
    if bad.any():
        excess = np.where(bad, np.nan_to_num(difference - bounds, nan=np.inf), -np.inf)
        worst = np.unravel_index(int(np.argmax(excess)), shape)
        raise AssertionError(f"{int(bad.sum())} of {bad.size} {what} differ by more than their bound; worst at "
                             f"{tuple(int(i) for i in worst)}: {actual_values[worst]!r} vs {desired_values[worst]!r}, "
                             f"difference {difference[worst]:.3g}, bound {bounds[worst]:.3g}")


#: Two onnxruntime runs of one graph on the same crops in other batches, processes or thread counts: bit-identical
#: as measured (its CPU kernels split work over output elements, never over a sum; docs/numerics.md). The 4 float32
#: ulps of a 0-100 score (3.1e-5) are a chosen margin, not a measured or derived spread, in case a kernel of another
#: CPU splits a sum after all.
SAME_GRAPH_SCORE = 4 * float(np.spacing(np.float32(100.0)))

#: The same, relative, for values not on the 0-100 scale (a raw score, a training-free method's value) computed from
#: the same vectors by the same graphs and numpy code: measured bit-identical across OpenCV's AVX-512, AVX2 and AVX
#: kernels, numpy at its baseline and 1 or 2 threads (scripts/test.sh's second run); 1e-6, about 8 float32 ulps, is a
#: chosen margin over that zero spread, as SAME_GRAPH_SCORE is.
SAME_GRAPH_RTOL = 1e-6


#: A vector normalised in float32 (its norm: a sum of at most 512 squares, then a square root and a division) has
#: each component within gamma_515 of the exact unit vector's (components <= 1); two such computations of the same
#: vector (other batches, other summation orders) are within twice that, 6.1e-5.
UNIT_VECTOR_PATHS = float(2 * gamma(515))
#: The norm of a float32 unit vector (as above) computed again in float32: within gamma_515 + gamma_514 of 1.
UNIT_NORM = float(gamma(515) + gamma(514))
