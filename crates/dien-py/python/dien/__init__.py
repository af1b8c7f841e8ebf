"""dien: a hand-written CPU engine for DIEN (Deep Interest Evolution Network).

Score requests (:class:`Predictor`), run forward and backward passes on
NumPy arrays (:class:`Model`, :class:`Batch`), train, evaluate and generate
data (:func:`train`, :func:`evaluate`, :func:`generate`). The computations
run in Rust with the GIL released.

The model, its tensor names and gate order are defined in ``docs/MODEL.md``;
this package is described in ``docs/PYTHON.md``.
"""

from ._dien import (
    Batch,
    Model,
    Predictor,
    __version__,
    evaluate,
    generate,
    simd_target,
    train,
)

__all__ = [
    "Batch",
    "Model",
    "Predictor",
    "__version__",
    "evaluate",
    "generate",
    "simd_target",
    "train",
]
