"""The work of one chunk of images, shared by both engines: load, trace once, explain, score.

A chunk is a few batches of images. Per batch: every image is read (``load_image``) and
prepared (``preprocess``), the batch is traced once with the graph from the earliest layer,
and for every target round one backward serves every gradient CAM method and every layer
(``Trace`` caches gradients per target, ``explain.raw_cams`` reads them). Methods that are not
read from a trace run through ``explain.compute``, one image and target at a time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import explain
from ..explain._common import check_eval
from ..images import load_image
from ..geometry import view_box
from ..preprocess import preprocess
from ..topology import default_cam_layer, topology
from . import metrics
from .dataset import Item
from .protocol import RESOLUTIONS, empty_scores, score_map

#: Columns of a row, in order (``results/`` Parquet schema; see :mod:`.results`).
COLUMNS = ("image", "target", "target_index", "target_source", "method", "layer", "predicted",
           "predicted_index", "correct", "score", "logit", "probabilities", "labels", "truth", "lesion_fraction",
           "hit", "energy_in", "iou", "dice", "threshold", "deletion_auc", "insertion_auc",
           "height", "width", "chunk", "map_index", "scored_at", "hit_mask", "hit_box", "uncertain", "reader")


@dataclass(frozen=True)
class Settings:
    """What an audit computes; part of the run's identity (a resumed run must match).

    Attributes:
        methods: registered method names (``explain.METHODS``); CAMs are the fast path.
        layers: layer names; ``None``: the model's ``cam_layer`` and every dense block output.
        batch_size: images per traced batch.
        chunk_size: images per written part (the unit of resumption).
        binarize: ``"otsu"`` (CheXlocalize) or a fixed threshold in (0, 1) (strict ``>``).
        map_size: side of the stored maps; ``None`` (default): the model's input size, so that
            ``audit rescore`` can re-score a finished run exactly.
        resolution: where IoU, Dice and the pointing game are computed: ``"original"`` (the
            film's pixels, CheXlocalize's protocol; default) or ``"input"`` (the model's grid).
        pointing_tolerance: pointing-game tolerance in model-input pixels (default 0, as CheXlocalize).
        deletion: also compute deletion/insertion AUCs (costly: ~66 extra forwards per row).
        deletion_steps: steps of those curves.
        sanity_images: run the model-randomisation sanity check (Adebayo et al. 2018) on this
            many images with ground truth, first method at its first layer, after the run
            (0: none); its rank correlations go into the summary.
        device: ``"cpu"``, ``"cuda"``, ...
    """

    methods: tuple[str, ...] = ("gradcam",)
    layers: tuple[str, ...] | None = None
    batch_size: int = 8
    chunk_size: int = 32
    binarize: str | float = "otsu"
    map_size: int | None = None
    resolution: str = "original"
    pointing_tolerance: float = 0.0
    deletion: bool = False
    deletion_steps: int = 16
    sanity_images: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("choose at least one method")
        for name in self.methods:
            explain.method(name)  # raises, naming the known ones
        if int(self.sanity_images) < 0:
            raise ValueError(f"sanity_images must be >= 0, got {self.sanity_images}")
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {self.resolution!r}")
        if not float(self.pointing_tolerance) >= 0:
            raise ValueError(f"pointing_tolerance must be >= 0 pixels, got {self.pointing_tolerance!r}")
        for what in ("batch_size", "chunk_size", "map_size", "deletion_steps"):
            if getattr(self, what) is None and what == "map_size":
                continue
            if int(getattr(self, what)) < 1:
                raise ValueError(f"{what} must be at least 1, got {getattr(self, what)}")
        if not (isinstance(self.binarize, str) and self.binarize == "otsu"):
            try:
                threshold = float(self.binarize)
            except (TypeError, ValueError):
                raise ValueError(f"binarize must be 'otsu' or a threshold in (0, 1), got {self.binarize!r}") from None
            if not 0 < threshold < 1:
                raise ValueError(f"a fixed threshold must lie in (0, 1), got {self.binarize!r}")

    def to_json(self) -> dict:
        """The settings as plain JSON (the device is left out: it does not change the rows)."""
        d = dataclasses.asdict(self)
        d.pop("device")
        d["methods"], d["layers"] = list(self.methods), None if self.layers is None else list(self.layers)
        return d

    @classmethod
    def from_json(cls, d: dict, device: str = "cpu") -> Settings:
        """The inverse of :meth:`to_json`."""
        layers = d.get("layers")
        return cls(**{**d, "methods": tuple(d["methods"]), "layers": None if layers is None else tuple(layers),
                      "device": device})


def default_layers(model: torch.nn.Module) -> list[str]:
    """Every dense block's output and the layer to explain first (the model's ``metadata["cam_layer"]``, else
    the last feature map), in forward order."""
    blocks = [b.name for b in topology(model.config).blocks]
    order = {n: i for i, n in enumerate(model.tap_names)}
    return sorted(dict.fromkeys(blocks + [default_cam_layer(model)]), key=order.__getitem__)


def resolve_layers(model: torch.nn.Module, settings: Settings) -> list[str]:
    """The settings' layers, checked against the model (``None``: :func:`default_layers`)."""
    if settings.layers is None:
        return default_layers(model)
    return model.resolve_layers(list(settings.layers))


@dataclass
class ChunkResult:
    """What one chunk produced: rows (column -> list), maps (R, m, m) float16, skipped images."""

    rows: dict[str, list] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    maps: list[np.ndarray] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    images_done: int = 0

    @property
    def num_rows(self) -> int:
        return len(self.rows["image"])

    def map_stack(self, size: int | None) -> np.ndarray:
        if self.maps:
            return np.stack(self.maps).astype(np.float16)
        return np.zeros((0, size or 0, size or 0), np.float16)


@dataclass
class _Prepared:
    item: Item
    x: torch.Tensor  # (1, C, S, S)
    height: int
    width: int
    view: tuple[float, float, float, float]


class Auditor:
    """Holds the model and settings; :meth:`run_chunk` does the work (an engine calls it).

    The model is used read-only (it may be shared with other threads).
    """

    def __init__(self, model: torch.nn.Module, settings: Settings) -> None:
        check_eval(model)
        self.model = model
        self.settings = settings
        self.layers = resolve_layers(model, settings)
        self.records = [explain.method(name) for name in settings.methods]
        self.class_names = list(model.class_names)
        self.size = int(model.preprocessing.size)
        self.multilabel = bool(model.config.multilabel)
        self._tick: Callable[[float], None] | None = None

    def run_chunk(self, chunk: int, items: list[Item], progress: Callable[[int], None] | None = None) -> ChunkResult:
        """Audit ``items`` (one chunk); ``progress(images_done_in_this_batch)`` is called after each batch."""
        out = ChunkResult()
        # Slow methods (re-running the model per image) report between their own chunks too, so
        # that a caller can pause or stop inside a long batch.
        self._tick = None if progress is None else (lambda fraction: progress(0))
        bs = self.settings.batch_size
        for start in range(0, len(items), bs):
            prepared = []
            for item in items[start:start + bs]:
                try:
                    prepared.append(self._prepare(item))
                except Exception as e:  # a file that cannot be read is recorded, not fatal
                    out.skipped.append((item.image, _reason(e)))
            if prepared:
                self._run_batch(chunk, prepared, out)
            done = len(items[start:start + bs])
            out.images_done += done
            if progress is not None:
                progress(done)
        return out

    def _prepare(self, item: Item) -> _Prepared:
        image = load_image(item.path)
        h, w = image.shape[:2]
        x = preprocess(image, self.model)
        return _Prepared(item, x, h, w, view_box(h, w, self.model))

    def _targets(self, p: _Prepared, top: int) -> list[tuple[int, str]]:
        """(class index, source) per row of this image: its true labels, else the top prediction."""
        if p.item.labels:
            return [(self.class_names.index(label), "label") for label in p.item.labels]
        return [(top, "prediction")]

    def _run_batch(self, chunk: int, batch: list[_Prepared], out: ChunkResult) -> None:
        x = torch.cat([p.x for p in batch])
        needs_graph = any(r.uses_trace and r.needs_graph for r in self.records)
        trace = self.model.trace(x, self.layers, keep_graph=needs_graph)
        logits = trace.logits.detach()
        probs = trace.probabilities.cpu().numpy().astype(np.float64)
        top = logits.argmax(dim=1).tolist()
        targets = [self._targets(p, top[i]) for i, p in enumerate(batch)]
        rounds = max(len(t) for t in targets)
        truths: dict[tuple[int, int], bool] = {}  # (image, class) whose truth could not be read
        for r in range(rounds):
            active = [i for i in range(len(batch)) if r < len(targets[i])]
            # Samples with fewer targets repeat their first one: its gradient is computed anyway.
            round_targets = [targets[i][r][0] if r < len(targets[i]) else targets[i][0][0] for i in range(len(batch))]
            for record in self.records:
                maps_by_layer = self._maps(record, trace, x, round_targets, active)
                for layer, maps in maps_by_layer.items():  # maps: (len(active), S, S) float32 in [0, 1]
                    self._score(chunk, batch, active, [targets[i][r] for i in active], record.name, layer, maps,
                                probs, logits, top, truths, x, out)
        del trace

    def _maps(self, record: explain.Method, trace, x: torch.Tensor, round_targets: list[int],
              active: list[int]) -> dict[str, np.ndarray]:
        size = (self.size, self.size)
        if record.uses_trace:
            raws, _ = explain.raw_cams(trace, record.name, round_targets, self.layers)
            with torch.no_grad():
                return {layer: explain.shown_map(raw[active], record.name, size).cpu().numpy()
                        for layer, raw in raws.items()}
        per_layer: dict[str, list[np.ndarray]] = {}
        for i in active:
            result = explain.compute(record.name, self.model, x, round_targets[i],
                                     self.layers if record.needs_layer else None, size=size, index=i,
                                     progress=self._tick)
            for layer, expl in result.items():
                per_layer.setdefault(layer, []).append(np.asarray(expl.map, np.float32))
        return {layer: np.stack(v) for layer, v in per_layer.items()}

    def _score(self, chunk: int, batch: list[_Prepared], active: list[int], targets: list[tuple[int, str]],
               method: str, layer: str, maps: np.ndarray, probs: np.ndarray, logits: torch.Tensor, top: list[int],
               truths: dict, x: torch.Tensor, out: ChunkResult) -> None:
        s = self.settings
        _, thresholds = metrics.binarize(maps, s.binarize)  # on the model's grid, for rows without truth
        small = _downsample(maps, s.map_size or self.size)
        for k, i in enumerate(active):
            p, (cls, source) = batch[i], targets[k]
            label = self.class_names[cls]
            # One row per reader where each reader's boxes are a truth of their own (VinDr "each"); they share a map.
            readers = p.item.readers.get(label, {})
            variants = [(r, p.item.for_reader(label, r)) for r in readers] or [("", p.item)]
            map_index = len(out.maps)
            out.maps.append(small[k])
            for reader, item in variants:
                self._row(chunk, p, item, reader, cls, source, label, i, k, method, layer, maps, probs, logits, top,
                          truths, x, thresholds, map_index, out)

    def _row(self, chunk: int, p: _Prepared, item: Item, reader: str, cls: int, source: str, label: str, i: int,
             k: int, method: str, layer: str, maps: np.ndarray, probs: np.ndarray, logits: torch.Tensor,
             top: list[int], truths: dict, x: torch.Tensor, thresholds: np.ndarray, map_index: int,
             out: ChunkResult) -> None:
        s = self.settings
        scores = None
        if not truths.get((i, cls)):
            try:
                scores = score_map(maps[k], item, label, p.height, p.width, p.view, self.model.preprocessing,
                                   resolution=s.resolution, binarize=s.binarize, tolerance=s.pointing_tolerance)
            except ValueError as e:
                truths[i, cls] = True  # reported once per image and class
                out.skipped.append((p.item.image, f"audited without ground truth: {e}"))
        scores = scores or empty_scores(float(thresholds[k]))
        labels = list(p.item.labels)
        if self.multilabel:
            correct = None if source != "label" else bool(probs[i, cls] >= 0.5)
        else:
            correct = None if not labels else bool(top[i] == cls)
        deletion = insertion = math.nan
        if s.deletion and scores["hit"] is not None:
            di = explain.deletion_insertion(self.model, x, maps[k], cls, steps=s.deletion_steps, index=i)
            deletion, insertion = di.deletion_auc, di.insertion_auc
        values = dict(
            image=p.item.image, target=label, target_index=cls, target_source=source,
            method=method, layer=layer, predicted=self.class_names[top[i]], predicted_index=top[i],
            correct=correct, score=float(probs[i, cls]), logit=float(logits[i, cls]),
            probabilities=[float(v) for v in probs[i]], labels=labels,
            deletion_auc=float(deletion), insertion_auc=float(insertion),
            height=p.height, width=p.width, chunk=chunk, map_index=map_index,
            uncertain=list(p.item.uncertain), reader=reader, **scores)
        for c in COLUMNS:
            out.rows[c].append(values[c])


def _downsample(maps: np.ndarray, side: int) -> np.ndarray:
    """(N, S, S) -> (N, side, side) by area averaging (antialiased), float32."""
    if maps.shape[-1] == side and maps.shape[-2] == side:
        return maps.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return torch.nn.functional.interpolate(t, size=(side, side), mode="area")[:, 0].numpy()


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
