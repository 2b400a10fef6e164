"""Where fiqa's numerical tolerances come from: unit roundoff and the standard error bounds built on it.

Two computations of the same float32 quantity (ONNX Runtime and PyTorch, a banded and a one-pass scan, BLAS kernels
with other blockings or thread counts) sum the same terms in different orders, so they may differ, but by no more
than what rounding can do. For a sum or dot product of ``n`` terms computed in any order, the classic bound
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 3.1) is

    |fl(sum a_i b_i) - sum a_i b_i| <= gamma_n * sum |a_i b_i|,    gamma_n = n u / (1 - n u),

with ``u`` the unit roundoff of the format (2**-24 for float32, 2**-53 for float64). Two such computations differ
by at most twice that. Every tolerance in the production gates is one of these bounds (or a spread measured across
kernels and threads, named as such where it is used); docs/numerics.md lists them all.
"""
from __future__ import annotations

import numpy as np

#: Unit roundoff of float32 and float64 (half the distance from 1 to the next number).
U32 = 2.0**-24
U64 = 2.0**-53
#: Unit roundoff of float16 (the on-disk feature cache and ``features.npy``).
U16 = 2.0**-11


def gamma(n: int | np.ndarray, u: float = U32) -> float | np.ndarray:
    """``gamma_n = n u / (1 - n u)``: the relative error bound of a sum of ``n`` terms in any order.

    Raises ValueError when ``n u >= 1`` (no bound holds there).
    """
    nu = np.asarray(n, dtype=np.float64) * u
    if np.any(nu >= 1.0):
        raise ValueError(f"gamma_n is undefined for n u >= 1 (n={n}, u={u})")
    result = nu / (1.0 - nu)
    return float(result) if np.ndim(result) == 0 else result
