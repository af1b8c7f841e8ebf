"""Type stubs of the dien package (the native module dien._dien).

The model, its tensor names and gate order: docs/MODEL.md. This package:
docs/PYTHON.md.
"""

import os
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

StrPath = Union[str, "os.PathLike[str]"]
IntArray = npt.NDArray[np.integer]
#: A list of candidate or history entries: str ids, or indices.
Ids = Union[Sequence[str], IntArray, Sequence[int]]
Precision = Literal["f32", "f64"]

def simd_target() -> str:
    """The instruction set the engine was compiled for, e.g. ``"x86-64-v3 (AVX2+FMA)"``."""

class Predictor:
    """A loaded model ready to score requests; immutable, shared by threads.

    Scores equal those of the Rust API (``dien_model::serve::Predictor``)
    bit for bit. Scoring releases the GIL, so Python threads score in
    parallel.
    """

    @staticmethod
    def load(path: StrPath) -> "Predictor":
        """Loads a checkpoint and, when ``<name>.vocab.json`` exists beside it, its vocabularies.

        Raises ``FileNotFoundError``/``OSError`` for files, ``ValueError`` for
        a malformed checkpoint or sidecar.
        """
    @property
    def config(self) -> Dict[str, Any]:
        """The model configuration (the keys of :class:`Model`)."""
    @property
    def has_vocabs(self) -> bool:
        """Whether string ids can be scored."""
    @property
    def max_len(self) -> int:
        """The longest history used; longer ones keep their last ``max_len`` behaviours."""
    def score(
        self,
        history_items: Ids,
        history_cats: Ids,
        cand_items: Ids,
        cand_cats: Ids,
        uid: Union[str, int, None] = None,
    ) -> npt.NDArray[np.float32]:
        """Click probabilities of the candidates for one user.

        By string ids (lists of str, ``uid`` a str; unknown ids map to index
        0) or by index (1-D NumPy integer arrays or lists of int, ``uid`` an
        int); the candidate items decide which. ``uid=None`` is the unknown
        user. Returns one float32 probability per candidate. Bad input
        (empty candidate list, lists of different lengths, an index out of
        range, a wrong dtype or shape, a non-contiguous array) raises
        ``ValueError``.
        """
    def score_batch(
        self,
        history_items: Sequence[Ids],
        history_cats: Sequence[Ids],
        cand_items: Sequence[Ids],
        cand_cats: Sequence[Ids],
        uids: Optional[Sequence[Union[str, int, None]]] = None,
        threads: Optional[int] = None,
    ) -> List[npt.NDArray[np.float32]]:
        """Scores many requests (one entry per request in each list) in parallel.

        Runs on ``threads`` threads (default: every core) with the GIL
        released; returns one float32 array per request. Errors name the
        request.
        """
    def rust_timings(
        self,
        history_items: Ids,
        history_cats: Ids,
        cand_items: Ids,
        cand_cats: Ids,
        uid: Union[str, int, None] = None,
        repeats: int = 1000,
    ) -> npt.NDArray[np.float64]:
        """Seconds of each of ``repeats`` Rust calls behind :meth:`score` for one request (for benchmarks)."""

class Batch:
    """A batch of samples from padded arrays (the rules of the JSON batch file, docs/MODEL.md#batch-file).

    ``uid``, ``mid``, ``cat``, ``lengths``, ``label``: ``[B]``;
    ``hist_mid``, ``hist_cat``, ``neg_mid``, ``neg_cat``: ``[B, T]``,
    oldest behaviour first, sample b using its first ``lengths[b]`` columns
    (the rest is padding and is not read). Index arrays are integer arrays
    (int64 is read in place), C-contiguous. Raises ``ValueError`` with the
    JSON batch file's messages.
    """

    def __init__(
        self,
        uid: IntArray,
        mid: IntArray,
        cat: IntArray,
        hist_mid: IntArray,
        hist_cat: IntArray,
        lengths: IntArray,
        label: npt.ArrayLike,
        neg_mid: Optional[IntArray] = None,
        neg_cat: Optional[IntArray] = None,
    ) -> None: ...
    @staticmethod
    def from_json(path: StrPath) -> "Batch":
        """Reads a JSON batch file (the input of ``dien grads``)."""
    @staticmethod
    def from_json_str(text: str) -> "Batch":
        """Parses the text of a JSON batch file."""
    @property
    def size(self) -> int:
        """Number of samples B."""
    @property
    def steps(self) -> int:
        """Padded history length T."""
    @property
    def has_negatives(self) -> bool:
        """Whether negatives are present (then the auxiliary loss is evaluated)."""
    @property
    def uid(self) -> npt.NDArray[np.int64]: ...
    @property
    def mid(self) -> npt.NDArray[np.int64]: ...
    @property
    def cat(self) -> npt.NDArray[np.int64]: ...
    @property
    def hist_mid(self) -> npt.NDArray[np.int64]: ...
    @property
    def hist_cat(self) -> npt.NDArray[np.int64]: ...
    @property
    def neg_mid(self) -> Optional[npt.NDArray[np.int64]]: ...
    @property
    def neg_cat(self) -> Optional[npt.NDArray[np.int64]]: ...
    @property
    def lengths(self) -> npt.NDArray[np.int64]: ...
    @property
    def label(self) -> npt.NDArray[np.float32]: ...
    def __len__(self) -> int: ...

class Model:
    """A model with its parameters: forward passes, losses and gradients in f32 or f64.

    ``config`` keys: ``n_uid``, ``n_mid``, ``n_cat`` (required table sizes),
    ``model`` (``"dien"``, ``"dien-noaux"``, ``"din"``, ``"base"``),
    ``variant`` (``"augru"``, ``"augru-ref"``, ``"agru"``, ``"aigru"``,
    ``"gru_att"``), ``att`` (``"mlp"``, ``"bilinear"``), ``aux`` (``"mlp"``,
    ``"dot"``), ``d`` (or ``dim``), ``H`` (or ``hidden``), ``max_len``,
    ``alpha_aux``. A model is used by one thread at a time (calls wait for
    each other).
    """

    def __init__(self, config: Mapping[str, Any], seed: int = 2018, threads: Optional[int] = None) -> None: ...
    @staticmethod
    def load(path: StrPath, threads: Optional[int] = None) -> "Model":
        """Loads a checkpoint."""
    @property
    def config(self) -> Dict[str, Any]: ...
    @property
    def threads(self) -> Optional[int]: ...
    def tensors(self) -> List[Dict[str, Any]]:
        """``{"name", "shape", "kind"}`` of every tensor in canonical order (kind ``"param"`` or ``"buffer"``)."""
    def forward(
        self, batch: Batch, mode: Literal["eval", "train"] = "eval", precision: Precision = "f32"
    ) -> Tuple[npt.NDArray[np.floating], Dict[str, float]]:
        """``(logits [B], {"loss", "loss_target", "loss_aux"})``; changes nothing in the model."""
    def rust_timings(
        self, batch: Batch, mode: Literal["eval", "train"] = "eval", repeats: int = 50
    ) -> npt.NDArray[np.float64]:
        """Seconds of each of ``repeats`` Rust float32 forward passes behind :meth:`forward` (for benchmarks)."""
    def loss_and_grads(
        self, batch: Batch, precision: Precision = "f32"
    ) -> Tuple[Dict[str, float], Dict[str, npt.NDArray[np.floating]]]:
        """Training-mode losses and the gradient of ``loss`` for every trainable tensor, by name."""
    def parameters(self, precision: Precision = "f32") -> Dict[str, npt.NDArray[np.floating]]:
        """A copy of every tensor (parameters and running statistics) by name."""
    def load_parameters(self, params: Mapping[str, npt.NDArray[np.floating]], strict: bool = False) -> None:
        """Sets tensors by name (exact shapes, float32 or float64, finite); ``strict`` requires all of them."""
    def save(self, path: StrPath) -> None:
        """Writes a checkpoint (f32, without vocabularies)."""
    def predictor(self) -> Predictor:
        """A :class:`Predictor` of the current parameters (scores by index)."""

def train(
    data_dir: StrPath,
    model: str = "dien",
    *,
    out: StrPath,
    epochs: Optional[int] = None,
    seed: Optional[int] = None,
    threads: Optional[int] = None,
    valid_frac: Optional[float] = None,
    select: Optional[Literal["valid", "test"]] = None,
    early_stop: Optional[int] = None,
    on_step: Optional[Callable[[Dict[str, Any]], Any]] = None,
    **settings: Any,
) -> Dict[str, Any]:
    """Trains as ``dien train`` does; returns the final metrics and the run's summary.

    ``valid_frac`` (0.1) of the training users are held out for validation;
    ``select`` chooses the best checkpoint by validation AUC (``"valid"``, the
    default) or by test AUC (``"test"``, the reference code's way);
    ``early_stop`` stops after that many evaluations without a new best.
    ``settings`` are the other flags of ``dien train`` with underscores
    (``batch``, ``max_len``, ``lr``, ``max_steps``, ``eval_every``,
    ``no_epoch_eval``, ``variant``, ``dim``, ``hidden``, ``metrics_log``,
    ``plot``, ...) plus ``log_every`` and ``progress``. ``on_step`` is called
    with each log record as a dict. The result holds the final model's test
    metrics (``auc``, ``gauc``, ``logloss``, ``accuracy``, ``samples``), its
    validation metrics (``valid``), the best model (``best``: ``step``,
    ``epoch``, ``valid_auc``, ``test``, ``checkpoint``), ``best_auc``,
    ``select``, the ``split`` and ``stopped_early``.
    """

def evaluate(
    checkpoint: StrPath,
    data: StrPath,
    batch: int = 256,
    threads: Optional[int] = None,
    skip_bad_lines: bool = False,
) -> Dict[str, Any]:
    """AUC, GAUC, logloss, accuracy and samples of a checkpoint on a data file or directory."""

def generate(out: StrPath, *, seed: Optional[int] = None, **settings: Any) -> Dict[str, Any]:
    """Writes a synthetic data set (``users``, ``items``, ``categories``, ``min_history``, ``max_history``, ``test_fraction``)."""
