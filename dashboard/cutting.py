"""Results of cutting dense links on the session's image, each computed once per session (memoised).

Everything resumes from the session's trace (:class:`~dashboard.results.Analysis`): the stem is not run again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from densenet import explain

from . import analysis, runtime, session
from .results import Analysis, Context

Cut = tuple[tuple[int, int], ...]  # (source, target) links of one block


@dataclass(frozen=True)
class Outcome:
    """The prediction and Grad-CAM (at ``norm5``) before and after cutting ``cuts`` in block ``block``.

    Attributes:
        block: 1-based.
        cuts: the cut links (source, target), sorted.
        target: the class whose logit, probability and Grad-CAM are compared.
        before, after: the top predictions without and with the cuts.
        logit_before, logit_after, prob_before, prob_after: the target's.
        cam_before, cam_after: (H, W) Grad-CAM maps in [0, 1] for the target.
    """

    block: int
    cuts: Cut
    target: int
    before: list[analysis.Prediction]
    after: list[analysis.Prediction]
    logit_before: float
    logit_after: float
    prob_before: float
    prob_after: float
    cam_before: np.ndarray
    cam_after: np.ndarray

    @property
    def flipped(self) -> bool:
        """The top class changed."""
        return self.before[0].index != self.after[0].index


def get_outcome(ctx: Context, an: Analysis, block: int, cuts: Cut, target: int) -> Outcome:
    """Cut ``cuts`` of ``block`` on the session's image: logits (one batch with the uncut row) and both Grad-CAMs."""
    cuts = tuple(sorted(cuts))

    def run() -> Outcome:
        model = ctx.load()
        links = [(block, j, l) for j, l in cuts]
        with runtime.job("Cutting the links"):
            logits = explain.cut_links(model, an.trace, [[], links])
            probs = torch.sigmoid(logits) if an.multilabel else torch.softmax(logits, dim=1)
            cams = [explain.cut_grad_cam(model, an.trace, s, target, size=an.size).map for s in ([], links)]
        k = min(5, len(model.class_names))
        before = analysis.top_k(probs[:1], logits[:1], model.class_names, k=k)
        after = analysis.top_k(probs[1:], logits[1:], model.class_names, k=k)
        return Outcome(block, cuts, target, before, after, float(logits[0, target]), float(logits[1, target]),
                       float(probs[0, target]), float(probs[1, target]), cams[0], cams[1])

    return session.memo("cut_outcomes", (an.key, block, cuts, target), run, max_entries=16)


def peek_importance(an: Analysis, block: int, target: int) -> explain.LinkImportance | None:
    return session.peek("link_importance", (an.key, block, target))


def get_importance(ctx: Context, an: Analysis, block: int, target: int) -> explain.LinkImportance:
    """Every link of ``block`` cut on its own (L(L+1)/2 resumed forwards), as a long job with a progress bar."""

    def run() -> explain.LinkImportance:
        with runtime.job("Cutting every link in turn", long=True, bar=True) as job:
            return explain.link_importance(ctx.load(), an.trace, target, block=block, progress=job.progress)

    return session.memo("link_importance", (an.key, block, target), run, max_entries=8)
