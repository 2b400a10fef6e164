"""CR-FIQA pseudo labels computed offline (Boutros et al., CVPR 2023).

For image ``x`` of identity ``y`` with unit class centres ``c_j``:

- CCS = cos(x, c_y), the certainty of its own class;
- NNCCS = max over identities ``j != y`` of cos(x, c_j), the nearest other class;
- CR = CCS / (NNCCS + 1 + eps) (the paper's form, ``ratio="paper"``), or CCS / NNCCS (``ratio="official"``, the
  official training code, which explodes when NNCCS nears 0 and flips sign below it).

Centres are the L2-normalised rows of a recognition classifier's weight matrix (C, d) when given (row ``j`` is
identity ``j``, so identities must be the integers ``0 .. C-1``), else the class means of the normalised
embeddings. With class means, ``leave_one_out=True`` removes the image from its own centre (the own image
inflates CCS for small classes); other identities' centres always use all their images.

The nearest other centre is exact by default (``nearest="exact"``): each block of images is multiplied with blocks of
centres (float32 GEMMs), the own class is masked, and a running maximum is kept; ``2 N C d`` flops, about 1.3 h for
MS1MV2 (5.8M images, 85.7K identities) on 2 cores.

``nearest="approximate"`` screens every centre with int8 products and re-ranks the few candidates exactly
(:func:`approximate_nearest_other`): still brute force, at a fraction of the CPU time (uint8 x int8 GEMMs with
int32 accumulation, onnxruntime's ``MatMulInteger``, VNNI on x86; onnxruntime is already a dependency; the same
graph keeps only the best product of each group of 64 centres, so Python scans 64 times fewer numbers), with a
candidate band of ``z = 6`` standard deviations of the quantisation error on each side, so the exact nearest other
centre is missed only when a rounding error exceeds 6 sigma; time and recall measured at MS1MV2 size in
``benchmarks/results/ms1m_scale.md``. ANN indexes were measured first and lose here: on 85,742 centres spread
uniformly over the sphere in d = 512 (the synthetic MS1MV2 set: no low-dimensional structure for an index to
exploit), faiss HNSW (M = 32, efSearch = 512) found the exact nearest other centre for 77% of 20,000 rows at 6x the
CPU time of the exact GEMMs (its build not counted), and IVF (1024 lists, 128 of them probed) for 38%.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fiqa.core.atomic import load_npy
from fiqa.core.errors import InvalidParameterError, ModelFileError, StoreError
from fiqa.core.params import Boolean, InstanceOf, Interval, Options, Param, PathLike
from fiqa.core.progress import tqdm
from fiqa.label.base import (
    LABELERS,
    Labeler,
    LabelInput,
    LabelResult,
    class_sums,
    rowwise_dot,
)

logger = logging.getLogger(__name__)


def load_centres(source: str | Path | np.ndarray, key: str | None = None) -> np.ndarray:
    """Read class centres (a classifier weight matrix) and L2-normalise its rows.

    Parameters
    ----------
    source : path or ndarray of shape (C, d)
        A ``.npy`` file, a PyTorch checkpoint (``.pt``, ``.pth``, ``.ckpt``, ``.bin``) holding the matrix under
        ``key``, or the matrix itself.
    key : str, optional
        The tensor's key in a checkpoint dictionary (looked up at the top level and inside nested dictionaries
        such as ``state_dict``); not needed when the checkpoint is a single tensor.

    Returns
    -------
    ndarray of shape (C, d), float32
        Unit rows.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The file is missing or unreadable, the key is absent, or the matrix is not 2-D, finite and non-zero.
    """
    name = "centres array" if isinstance(source, np.ndarray) else str(source)
    if isinstance(source, np.ndarray):
        matrix = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelFileError(f"{path}: centres file does not exist")
        if path.suffix == ".npy":
            try:
                matrix = load_npy(path)
            except StoreError as exc:
                raise ModelFileError(f"{path}: not a readable .npy array ({exc})") from None
        elif path.suffix in {".pt", ".pth", ".ckpt", ".bin"}:
            matrix = _tensor_from_checkpoint(path, key)
        else:
            raise ModelFileError(f"{path}: centres must be a .npy file or a PyTorch checkpoint "
                                 f"(.pt, .pth, .ckpt, .bin), not {path.suffix or 'a file without extension'!r}")
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ModelFileError(f"{name}: centres must be a 2-D (n_classes, d) matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ModelFileError(f"{name}: centres contain non-finite values")
    lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (lengths == 0).any():
        raise ModelFileError(f"{name}: centre row {int(np.flatnonzero(lengths[:, 0] == 0)[0])} is all zeros")
    return matrix / lengths


def _tensor_from_checkpoint(path: Path, key: str | None) -> np.ndarray:
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(checkpoint, torch.Tensor):
        return checkpoint.detach().float().numpy()
    if not isinstance(checkpoint, dict):
        raise ModelFileError(f"{path}: checkpoint holds a {type(checkpoint).__name__}, not a tensor or a dict")
    found = dict(_flat_tensors(checkpoint))
    if key is None or key not in found:
        matrices = [k for k, v in found.items() if v.ndim == 2]
        what = "a 'centres_key' is needed" if key is None else f"no tensor under key {key!r}"
        raise ModelFileError(f"{path}: {what}; 2-D tensors in the checkpoint: {', '.join(matrices[:20]) or 'none'}")
    return found[key].detach().float().numpy()


def _flat_tensors(tree: dict, depth: int = 0):
    import torch

    for k, v in tree.items():
        if isinstance(v, torch.Tensor):
            yield str(k), v
        elif isinstance(v, dict) and depth < 2:
            yield from _flat_tensors(v, depth + 1)


class CRLabeler(Labeler):
    """CR-FIQA certainty ratio: own-class similarity over nearest-other-class similarity.

    Parameters
    ----------
    centres : path or ndarray of shape (C, d), optional
        Classifier weight matrix (see :func:`load_centres`); identities must then be ``0 .. C-1`` (ints, or
        strings of them). Default: class means of the embeddings.
    centres_key : str, optional
        Key of the matrix in a PyTorch checkpoint.
    leave_one_out : bool, default=False
        With class means: leave each image out of its own centre.
    ratio : {"paper", "official"}, default="paper"
        ``CCS / (NNCCS + 1 + eps)`` or ``CCS / NNCCS``.
    eps : float, default=1e-9
    nearest : {"exact", "approximate"}, default="exact"
        How the nearest other centre (NNCCS) is found: float32 GEMMs against every centre, or int8 screening
        with an exact re-rank of the candidate groups (:func:`approximate_nearest_other`; its NNCCS is the exact
        similarity of the centre it finds; recall and time at MS1MV2 size in ``benchmarks/results/ms1m_scale.md``).
    block_rows : int, default=2048
        Images per GEMM block of the exact search (the approximate one has its own blocks).
    centre_block : int, default=16384
        Centres per GEMM block of the exact search (bounds memory at ``block_rows * centre_block`` floats).
    random_state : int or None, default=0
        Unused (the method is deterministic); recorded for uniformity.
    """

    name = "cr"
    param_specs: ClassVar[dict[str, Param]] = {
        **Labeler.param_specs,
        "centres": Param(None, [PathLike(), InstanceOf(np.ndarray, "an array of shape (C, d)"), None],
                         "Classifier weight matrix (.npy or PyTorch checkpoint); identities must then be 0 .. C-1. "
                         "Default: class means of the embeddings."),
        "centres_key": Param(None, [InstanceOf(str), None], "Key of the matrix in a PyTorch checkpoint."),
        "leave_one_out": Param(False, [Boolean()], "With class means: leave each image out of its own centre."),
        "ratio": Param("paper", [Options(("paper", "official"))], "CCS / (NNCCS + 1 + eps) or CCS / NNCCS."),
        "eps": Param(1e-9, [Interval(float, 0, 1, closed="both")], "The eps of the paper's ratio."),
        "nearest": Param("exact", [Options(("exact", "approximate"))],
                         "How the nearest other centre is found: float32 GEMMs against every centre, or int8 "
                         "screening with an exact re-rank of the candidates."),
        "block_rows": Param(2048, [Interval(int, 1, None, closed="left")],
                            "Images per GEMM block of the exact search."),
        "centre_block": Param(16384, [Interval(int, 1, None, closed="left")],
                              "Centres per GEMM block of the exact search (memory: block_rows * centre_block "
                              "floats)."),
    }

    def __init__(self, *, centres: str | Path | np.ndarray | None = None, centres_key: str | None = None,
                 leave_one_out: bool = False, ratio: str = "paper", eps: float = 1e-9, nearest: str = "exact",
                 block_rows: int = 2048, centre_block: int = 16384, random_state: int | None = 0) -> None:
        super().__init__(random_state=random_state)
        self.centres = centres
        self.centres_key = centres_key
        self.leave_one_out = leave_one_out
        self.ratio = ratio
        self.eps = eps
        self.nearest = nearest
        self.block_rows = block_rows
        self.centre_block = centre_block

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.leave_one_out and self.centres is not None:
            raise InvalidParameterError(type(self).__name__, "leave_one_out",
                                        "False when classifier centres are given (they hold no image to leave out)",
                                        self.leave_one_out)

    def _min_class_size(self) -> int:
        return 1 if self.centres is not None else 2

    def _label(self, data: LabelInput, rng: np.random.Generator) -> LabelResult:
        vectors, codes = data.vectors, data.codes
        if self.centres is not None:
            centres = load_centres(self.centres, self.centres_key)
            own = self._classifier_rows(data.names, len(centres))[codes]
            if centres.shape[1] != vectors.shape[1]:
                raise InvalidParameterError(type(self).__name__, "centres",
                                            f"a matrix with d={vectors.shape[1]} columns like the embeddings",
                                            f"shape {centres.shape}")
            ccs = rowwise_dot(vectors, centres, own)
        else:
            sums = class_sums(vectors, codes, data.n_identities)
            sum_length = np.linalg.norm(sums, axis=1)
            centres = (sums / sum_length[:, None]).astype(np.float32)
            own = codes
            if self.leave_one_out:
                dot_sum = rowwise_dot(vectors, sums, codes)
                held_out_length = np.sqrt(np.maximum(sum_length[codes] ** 2 - 2.0 * dot_sum + 1.0, 0.0))
                # the held-out centre vanishes only if the other images cancel exactly; call that CCS 0
                ccs = np.divide(dot_sum - 1.0, held_out_length, out=np.zeros(len(codes)),
                                where=held_out_length > 0)
            else:
                ccs = rowwise_dot(vectors, centres, codes)
        nnccs = self.nearest_other_similarity(vectors, centres, own)
        if self.ratio == "paper":
            score = ccs / (nnccs + 1.0 + self.eps)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                score = ccs / nnccs
        return LabelResult(score, {"ccs": ccs, "nnccs": nnccs})

    def _classifier_rows(self, names: np.ndarray, n_centres: int) -> np.ndarray:
        """Classifier row of each identity name (names must be the integers 0 .. C-1)."""
        try:
            rows = np.array([int(name) for name in names], dtype=np.int64)
        except ValueError:
            bad = next(name for name in names if not str(name).lstrip("-").isdigit())
            raise InvalidParameterError(
                type(self).__name__, "centres", "used with integer identities 0 .. C-1 (row j of the classifier "
                "is identity j)", f"identity {str(bad)!r}") from None
        outside = (rows < 0) | (rows >= n_centres)
        if outside.any():
            raise InvalidParameterError(
                type(self).__name__, "centres", f"a matrix with a row for every identity; it has {n_centres} rows",
                f"identity {int(rows[outside][0])} ({int(outside.sum())} identities outside 0..{n_centres - 1})")
        return rows

    def nearest_other_similarity(self, vectors: np.ndarray, centres: np.ndarray, own: np.ndarray) -> np.ndarray:
        """``max_{j != own[i]} vectors[i] . centres[j]``: exact by blocks of GEMMs, or with ``nearest="approximate"``
        by :func:`approximate_nearest_other`.

        Parameters
        ----------
        vectors : ndarray of shape (n, d), float32
        centres : ndarray of shape (C, d), float32
            Unit rows; ``C >= 2``.
        own : ndarray of shape (n,), int
            The row of ``centres`` to exclude for each vector.

        Returns
        -------
        ndarray of shape (n,), float64
        """
        n_centres = len(centres)
        if n_centres < 2:
            raise InvalidParameterError(type(self).__name__, "identities", "at least 2 identities (CR needs a "
                                        "nearest other class)", f"{n_centres} identity")
        centres = np.ascontiguousarray(centres, dtype=np.float32)
        if self.nearest == "approximate":
            return approximate_nearest_other(vectors, centres, own)
        best = np.full(len(own), -np.inf, dtype=np.float32)
        n_chunks = -(-n_centres // self.centre_block)
        chunk = -(-n_centres // n_chunks)  # equal chunks of at most centre_block centres
        n_blocks = -(-len(own) // self.block_rows)
        for start in tqdm(range(0, len(own), self.block_rows), desc="cr", unit="block", leave=False,
                          total=n_blocks, disable=n_blocks < 8):
            stop = min(start + self.block_rows, len(own))
            block = np.asarray(vectors[start:stop], dtype=np.float32)
            block_own = own[start:stop]
            block_best = best[start:stop]
            for first in range(0, n_centres, chunk):
                last = min(first + chunk, n_centres)
                similarity = block @ centres[first:last].T
                inside = np.flatnonzero((block_own >= first) & (block_own < last))
                similarity[inside, block_own[inside] - first] = -np.inf
                np.maximum(block_best, similarity.max(axis=1), out=block_best)
        return best.astype(np.float64)


#: Half-width of the candidate band of the approximate search, in standard deviations of the quantisation error.
APPROXIMATE_Z = 6.0
#: Centres per group of the approximate search: onnxruntime hands back each group's largest screened product.
SCREEN_GROUP = 64
#: Rows whose candidates are re-ranked together (one small GEMM per candidate group and batch).
_RERANK_ROWS = 65536
_INT32_MIN = np.iinfo(np.int32).min


def approximate_nearest_other(vectors: np.ndarray, centres: np.ndarray, own: np.ndarray, *, block_rows: int = 512,
                              centre_block: int = 32768, z: float = APPROXIMATE_Z) -> np.ndarray:
    """``max_{j != own[i]} vectors[i] . centres[j]`` by int8 screening of groups of centres and an exact re-rank.

    The centres are quantised to int8 with one step ``a = max|C| / 127``, each vector to uint8 (zero point 128) with
    its own step ``b_i = max|x_i| / 127``; one ``MatMulInteger`` per block of vectors and of centres (onnxruntime,
    int32 accumulation) gives ``s~_ij = a b_i sum_t q(x_i)_t q(c_j)_t``, and the same graph reduces it to the largest
    ``s~`` of each group of :data:`SCREEN_GROUP` consecutive centres ``G_ig`` (so Python sees 64 times fewer
    numbers). For unit vectors the rounding errors give ``s~_ij - x_i . c_j`` a standard deviation
    ``sigma_i = sqrt((a^2 + b_i^2) / 12 + d a^2 b_i^2 / 144)``. Candidates are the group of the own centre and every
    other group whose ``G_ig`` lies within ``2 z sigma_i`` of the row's best ``G`` outside its own group; the answer
    is the largest exact (float64) similarity over the candidate groups' centres, the own one excluded. The exact
    nearest other centre ``j*`` is in a candidate group whenever both its error and that of the screening's best
    ``b`` are below ``z sigma_i`` (``G_g* >= s~_j* >= s_j* - z sigma >= s_b - z sigma >= s~_b - 2 z sigma``), so a
    miss needs a rounding error beyond ``z`` standard deviations; the value returned is always a true similarity,
    never above the exact answer.

    Parameters
    ----------
    vectors : ndarray of shape (n, d), float32
        Unit rows (memory-mapped input is read block by block).
    centres : ndarray of shape (C, d), float32
        Unit rows; ``C >= 2``.
    own : ndarray of shape (n,), int
        The centre to exclude for each vector.
    block_rows, centre_block : int, default=512, 32768
        Vectors and centres per product (memory about ``block_rows * centre_block`` int32; 512 rows ran the
        screening graph about 5 % faster than 2,048 on this project's AVX-512 VNNI machine,
        ``benchmarks/results/int8_screen.md``).
    z : float, default=6.0

    Returns
    -------
    ndarray of shape (n,), float64
    """
    n_centres = len(centres)
    centre_step = float(np.abs(centres).max()) / 127.0
    quantised = np.rint(centres / np.float32(centre_step)).astype(np.int8)
    n_chunks = -(-n_centres // centre_block)
    per_chunk = -(-n_centres // n_chunks)
    chunk = -(-per_chunk // SCREEN_GROUP) * SCREEN_GROUP  # about equal chunks of whole groups
    screens = [_GroupScreen.build(quantised, first, min(first + chunk, n_centres))
               for first in range(0, n_centres, chunk)]
    del quantised
    best = np.empty(len(own))
    rerank_rows = max(block_rows, _RERANK_ROWS // block_rows * block_rows)
    n_batches = -(-len(own) // rerank_rows)
    for begin in tqdm(range(0, len(own), rerank_rows), desc="cr (approximate)", unit="batch", leave=False,
                      disable=n_batches < 8):
        found = []
        for start in range(begin, min(begin + rerank_rows, len(own)), block_rows):
            state = _ScreenedBlock.quantise(start, vectors[start:start + block_rows], own[start:start + block_rows],
                                            centre_step, z)
            for screen in screens:
                state.scan(screen)
            found.append(state.candidates())
        rows, group_first = (np.concatenate(parts) for parts in zip(*found))
        stop = min(begin + rerank_rows, len(own))
        best[begin:stop] = _rerank(np.asarray(vectors[begin:stop], dtype=np.float32), centres, own[begin:stop],
                                   rows - begin, group_first)
    return best


@dataclass
class _GroupScreen:
    """One block of centres ``first .. last - 1`` of :func:`approximate_nearest_other` and its onnxruntime session
    (the int8 centres held as a constant, padded to whole groups with copies of the last centre)."""

    first: int
    last: int
    session: Any

    @classmethod
    def build(cls, quantised: np.ndarray, first: int, last: int) -> _GroupScreen:
        codes = quantised[first:last]
        padding = -len(codes) % SCREEN_GROUP
        if padding:  # copies of the last centre: they only repeat its product inside its own group
            codes = np.concatenate([codes, np.repeat(codes[-1:], padding, axis=0)])
        return cls(first, last, _screen_session(codes.T))

    def maxima(self, codes: np.ndarray) -> np.ndarray:
        """The largest screened product of each group for uint8 ``codes`` (m, d): (m, n_groups) int32."""
        return self.session.run(None, {"A": codes})[0]


@dataclass
class _ScreenedBlock:
    """One block of vectors in :func:`approximate_nearest_other`: its uint8 codes, candidate band and groups."""

    start: int
    own: np.ndarray
    codes: np.ndarray
    margin: np.ndarray
    best: np.ndarray = field(init=False)
    found: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.best = np.full(len(self.own), _INT32_MIN, np.int64)

    @classmethod
    def quantise(cls, start: int, vectors: np.ndarray, own: np.ndarray, centre_step: float,
                 z: float) -> _ScreenedBlock:
        """The block's uint8 codes (own step per row, zero point 128) and its band of ``2 z sigma`` in code units."""
        block = np.asarray(vectors, dtype=np.float32)
        row_step = np.abs(block).max(axis=1).astype(np.float64) / 127.0
        row_step[row_step == 0] = 1.0
        codes = (np.rint(block / row_step[:, None].astype(np.float32)) + 128).astype(np.uint8)
        dim = block.shape[1]
        sigma = np.sqrt((centre_step**2 + row_step**2) / 12.0 + dim * (centre_step * row_step) ** 2 / 144.0)
        margin = np.ceil(2.0 * z * sigma / (centre_step * row_step)).astype(np.int64) + 1
        return cls(start, np.asarray(own, dtype=np.int64), codes, margin)

    def scan(self, screen: _GroupScreen) -> None:
        """Keep the groups of ``screen`` within the band of the best other group so far (not the own group)."""
        maxima = screen.maxima(self.codes)
        inside = np.flatnonzero((self.own >= screen.first) & (self.own < screen.last))
        maxima[inside, (self.own[inside] - screen.first) // SCREEN_GROUP] = _INT32_MIN
        np.maximum(self.best, maxima.max(axis=1), out=self.best)
        floor = np.clip(self.best - self.margin, _INT32_MIN + 1, None).astype(np.int32)
        rows, groups = np.nonzero(maxima >= floor[:, None])
        self.found.append((rows, screen.first + groups * SCREEN_GROUP, maxima[rows, groups]))

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows (absolute) and first centres of the candidate groups: those within the band of the final best,
        and each row's own group."""
        rows, group_first, values = (np.concatenate(parts) for parts in zip(*self.found))
        keep = values >= self.best[rows] - self.margin[rows]
        own_rows = np.arange(len(self.own))
        own_first = self.own - self.own % SCREEN_GROUP  # chunks are whole groups, so groups align globally
        return (self.start + np.concatenate([rows[keep], own_rows]),
                np.concatenate([group_first[keep], own_first]))


def _rerank(block: np.ndarray, centres: np.ndarray, own: np.ndarray, rows: np.ndarray,
            group_first: np.ndarray) -> np.ndarray:
    """The largest exact similarity of each row of ``block`` over the centres of its candidate groups (rows
    ``rows``, groups starting at ``group_first``), its own centre excluded; one GEMM per group."""
    pairs = np.unique(np.stack([group_first, rows], axis=1), axis=0)  # a row's own group may also be a candidate
    best = np.full(len(block), -np.inf)
    bounds = np.flatnonzero(np.diff(pairs[:, 0])) + 1
    for part in np.split(pairs, bounds):
        first = int(part[0, 0])
        last = min(first + SCREEN_GROUP, len(centres))
        members = part[:, 1]
        similarity = block[members] @ centres[first:last].T  # float32, as the exact search
        mine = np.flatnonzero((own[members] >= first) & (own[members] < last))
        similarity[mine, own[members][mine] - first] = -np.inf
        best[members] = np.maximum(best[members], similarity.max(axis=1))
    return best


def _screen_session(centre_codes: np.ndarray):
    """An onnxruntime session computing ``MatMulInteger(A, B, 128)`` for uint8 rows ``A`` (m, d) with zero point 128
    and the constant int8 ``B = centre_codes`` (d, k), k a multiple of :data:`SCREEN_GROUP`, then the largest of
    each group of :data:`SCREEN_GROUP` columns: (m, k / SCREEN_GROUP) int32."""
    from onnx import TensorProto, helper, numpy_helper

    from fiqa.embed.onnx_runtime import inference_session

    dim, width = centre_codes.shape
    inputs = [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, dim])]
    output = helper.make_tensor_value_info("G", TensorProto.INT32, [None, width // SCREEN_GROUP])
    constants = [helper.make_tensor("a_zero_point", TensorProto.UINT8, [], [128]),
                 numpy_helper.from_array(np.ascontiguousarray(centre_codes), "B"),
                 numpy_helper.from_array(np.array([0, width // SCREEN_GROUP, SCREEN_GROUP], np.int64), "groups")]
    nodes = [helper.make_node("MatMulInteger", ["A", "B", "a_zero_point"], ["Y"]),
             helper.make_node("Reshape", ["Y", "groups"], ["R"]),
             helper.make_node("ReduceMax", ["R"], ["G"], axes=[2], keepdims=0)]
    graph = helper.make_graph(nodes, "int8_group_screen", inputs, [output], initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    # one session per block of centres: idle sessions' threads must not spin while the next one multiplies
    return inference_session(model.SerializeToString(), spinning=False)


LABELERS.register("cr", CRLabeler, reference="Boutros et al., CR-FIQA, CVPR 2023",
                  summary="CR-FIQA certainty ratio: own-class similarity over nearest-other-class similarity")
