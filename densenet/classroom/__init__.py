"""The lesson's claims about DenseNet, as experiments a class can run live (no Streamlit here).

Each experiment is a function returning plain data (dataclasses of lists and numpy arrays),
takes a ``progress`` callback (called between steps with the fraction done; raising from it,
e.g. :class:`Cancelled`, stops the work) and is sized to finish within about 90 s on 2 CPU cores
at its defaults:

- fewer parameters: :func:`published_accuracy`, :func:`same_depth`
- vanishing gradients: :func:`gradient_experiment`
- memory: :func:`memory_experiment`
- feature reuse: :func:`reuse_experiment` (and :func:`feature_reuse` for any model)
- training: :func:`learn` (a generator of snapshots), :func:`watch_it_learn`
- side by side: :func:`compare_with_resnet`, :func:`compare_configs`
- dense links cut to a chain: :func:`chain_experiment`

The ResNets are assembled from torchvision's ``BasicBlock``/``Bottleneck``
(:mod:`densenet.classroom.nets`, which also says how depth is counted).
"""

from __future__ import annotations

from ._common import Cancelled, Progress
from .chain import ChainResult, ChainRow, chain_experiment
from .compare import Architecture, Comparison, Row, compare_configs, compare_with_resnet
from .gradients import GradientProfile, GradientResult, gradient_experiment
from .memory import MemoryCurve, MemoryResult, StepMemory, memory_experiment, peak_bytes, training_step_memory
from .nets import BlockPlan, PeerNet, block_plan, matched_plain_cnn, matched_resnet, param_count, plain_cnn, resnet, same_depth_resnet
from .params import ParamsVsAccuracy, PublishedModel, SameDepth, published_accuracy, same_depth
from .reuse import FeatureReuse, ReuseResult, all_blocks, feature_reuse, reach, reuse_experiment
from .training import LearnSnapshot, NetProgress, learn, watch_it_learn

__all__ = [
    "Architecture", "BlockPlan", "ChainResult", "ChainRow", "chain_experiment", "Cancelled", "Comparison", "FeatureReuse", "GradientProfile", "GradientResult",
    "LearnSnapshot", "MemoryCurve", "MemoryResult", "NetProgress", "ParamsVsAccuracy", "PeerNet", "Progress",
    "PublishedModel", "ReuseResult", "Row", "SameDepth", "StepMemory", "all_blocks", "block_plan",
    "compare_configs", "compare_with_resnet", "feature_reuse", "gradient_experiment", "learn", "matched_plain_cnn",
    "matched_resnet", "memory_experiment", "param_count", "peak_bytes", "plain_cnn", "published_accuracy", "reach",
    "resnet", "reuse_experiment", "same_depth", "same_depth_resnet", "training_step_memory", "watch_it_learn",
]
