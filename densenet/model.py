"""The DenseNet family, read top to bottom: dense layer, dense block, transition, stem, head.

State-dict keys are exactly torchvision's (``features.conv0``, ``features.denseblock1.denselayer1.norm1``,
``features.transition1.conv``, ``features.norm5``, ``classifier``), so its checkpoints load unchanged.
Unlike torchvision, no operation is in place: every tapped tensor keeps the value the module produced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from .config import STEMS, DenseNetConfig, transition_channels
from .presets import default_for
from .topology import topology
from .trace import Trace

# Called with every tap's name and tensor during a forward pass; returns the tensor the network
# goes on with (the same one, or a detached leaf where a trace starts its autograd graph).
Recorder = Callable[[str, Tensor], Tensor]


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv to ``bn_size * k`` (the bottleneck), then BN-ReLU-3x3 conv to ``k`` new maps.

    Without a bottleneck (``bn_size=None``) only BN-ReLU-3x3 conv remains, named ``norm1/conv1``.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int | None,
                 drop_rate: float, memory_efficient: bool) -> None:
        super().__init__()
        self.has_bottleneck = bn_size is not None
        if self.has_bottleneck:
            width = bn_size * growth_rate
            self.norm1 = nn.BatchNorm2d(in_channels)
            self.relu1 = nn.ReLU()
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
            self.norm2 = nn.BatchNorm2d(width)
            self.relu2 = nn.ReLU()
            self.conv2 = nn.Conv2d(width, growth_rate, kernel_size=3, padding=1, bias=False)
        else:
            self.norm1 = nn.BatchNorm2d(in_channels)
            self.relu1 = nn.ReLU()
            self.conv1 = nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def _concat_norm_conv1(self, *inputs: Tensor) -> Tensor:
        # The concatenation is where DenseNet's memory goes; this is the part worth recomputing.
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    def forward(self, inputs: list[Tensor]) -> Tensor:  # (N, sum C_i, H, W) -> (N, k, H, W)
        recompute = (self.memory_efficient and torch.is_grad_enabled()
                     and any(t.requires_grad for t in inputs))
        if recompute:
            out = cp.checkpoint(self._concat_norm_conv1, *inputs, use_reentrant=False)
        else:
            out = self._concat_norm_conv1(*inputs)
        if self.has_bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class _DenseBlock(nn.ModuleDict):
    """L dense layers; layer l sees the block input and the maps of layers 1..l-1, concatenated."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int | None,
                 drop_rate: float, memory_efficient: bool) -> None:
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = _DenseLayer(in_channels + i * growth_rate, growth_rate,
                                                     bn_size, drop_rate, memory_efficient)

    def forward(self, x: Tensor, record: Recorder | None = None, prefix: str = "") -> Tensor:
        features = [x]
        for name, layer in self.items():
            new = layer(features)
            if record is not None:
                new = record(f"{prefix}.{name}", new)
            features.append(new)
        return torch.cat(features, 1)  # (N, C0 + L*k, H, W)


class _Transition(nn.Sequential):
    """BN-ReLU-1x1 conv to ``floor(theta * c)`` channels, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


def _stem(cfg: DenseNetConfig) -> list[tuple[str, nn.Module]]:
    stem = STEMS[cfg.stem]
    c0 = cfg.num_init_features
    conv = nn.Conv2d(cfg.in_channels, c0, kernel_size=stem.kernel, stride=stem.stride, padding=stem.kernel // 2,
                     bias=False)
    if not stem.pool:
        return [("conv0", conv)]
    return [("conv0", conv), ("norm0", nn.BatchNorm2d(c0)), ("relu0", nn.ReLU()),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]


class DenseNet(nn.Module):
    """A DenseNet built from a :class:`DenseNetConfig`.

    Attributes:
        config: the architecture.
        class_names: one name per logit.
        preprocessing: the :class:`~densenet.preprocess.Preprocessing` preset inputs need.
        metadata: free-form facts from the checkpoint (source, thresholds, ...).
    """

    def __init__(self, config: DenseNetConfig, *, class_names: list[str] | None = None,
                 preprocessing: Any = None, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.features = nn.Sequential()
        for name, module in _stem(cfg):
            self.features.add_module(name, module)
        channels = cfg.num_init_features
        for b, num_layers in enumerate(cfg.block_config, start=1):
            self.features.add_module(f"denseblock{b}", _DenseBlock(
                num_layers, channels, cfg.growth_rate, cfg.bn_size, cfg.drop_rate, cfg.memory_efficient))
            channels += num_layers * cfg.growth_rate
            if b < len(cfg.block_config):
                out = transition_channels(channels, cfg.compression)
                self.features.add_module(f"transition{b}", _Transition(channels, out))
                channels = out
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.num_features = channels
        outputs = cfg.num_classes - 1 if cfg.null_class else cfg.num_classes
        self.classifier = nn.Linear(channels, outputs)
        self._init_weights()

        self.class_names = list(class_names) if class_names else [f"class {i}" for i in range(cfg.num_classes)]
        if len(self.class_names) != cfg.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {cfg.num_classes} outputs")
        self.preprocessing = preprocessing or default_for(cfg.in_channels)
        self.metadata = dict(metadata or {})

    def _init_weights(self) -> None:
        # torchvision's initialisation, so fresh models behave like theirs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def stages(self) -> list[tuple[str, nn.Module]]:
        """``(tap name, module)`` for every stage of ``features`` (stem layers, blocks, transitions, norm5), in order."""
        return [(f"features.{child}", module) for child, module in self.features.named_children()]

    @property
    def tap_names(self) -> list[str]:
        """Every layer :meth:`trace` can return, in forward order."""
        names = []
        for child, module in self.features.named_children():
            if isinstance(module, _DenseBlock):
                names += [f"features.{child}.{layer}" for layer in module]
            names.append(f"features.{child}")
        return names

    # --- forward -----------------------------------------------------------------------------

    def forward_features(self, x: Tensor, record: Recorder | None = None) -> Tensor:
        """(N, C_in, H, W) -> the output of ``norm5``, (N, C, H/32, W/32) for ImageNet stems."""
        if x.device.type == "cpu" and x.dim() == 4:
            # oneDNN's channels-last convolutions: the same values to float rounding, measured 10%
            # faster for a DenseNet-121 trace with its backward on 2 cores (BENCHMARKS.md).
            x = x.contiguous(memory_format=torch.channels_last)
        for name, module in self.features.named_children():
            if isinstance(module, _DenseBlock):
                x = module(x, record, f"features.{name}")
            else:
                x = module(x)
            if record is not None:
                x = record(f"features.{name}", x)
        return x

    def forward_head(self, features: Tensor) -> Tensor:
        """norm5's output (N, C, h, w) -> logits (N, num_classes)."""
        x = F.relu(features)
        if self.config.pool == "avg":
            logits = self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        else:
            # Classify every location, then pool the scores with log-mean-exp (a soft max).
            w = self.classifier.weight[:, :, None, None]
            scores = F.conv2d(x, w, self.classifier.bias).flatten(2)  # (N, K, h*w)
            r = self.config.lme_r
            logits = (torch.logsumexp(r * scores, dim=2) - math.log(scores.shape[2])) / r
        if self.config.null_class:
            logits = torch.cat([logits.new_zeros(logits.shape[0], 1), logits], dim=1)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    # --- introspection -----------------------------------------------------------------------

    def check_input(self, x: Tensor) -> Tensor:
        """Validate an input batch and move it to the model's device and dtype."""
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError(f"expected an input of shape (N, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"this model takes {self.config.in_channels} input channel(s), "
                             f"got {x.shape[1]} (input shape {tuple(x.shape)})")
        param = next(self.parameters())
        return x.to(device=param.device, dtype=param.dtype)

    def resolve_layers(self, layers: Iterable[str] | str | None) -> list[str]:
        """Check layer names against :attr:`tap_names`; ``None`` means all of them."""
        names = self.tap_names
        if layers is None:
            return names
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; traceable layers look like "
                             f"{names[0]!r}, {names[-2]!r}, {names[-1]!r} (see model.tap_names)")
        return layers

    def trace(self, x: Tensor, layers: Iterable[str] | str | None = None, *,
              keep_graph: bool = False, amp: bool = False) -> Trace:
        """Logits and named activations from one forward pass, without hooks or state on the model.

        Args:
            x: input batch (N, C, H, W) or one image (C, H, W); moved to the model's device.
            layers: names from :attr:`tap_names` to keep; ``None`` keeps them all.
            keep_graph: build the autograd graph from the earliest kept layer to the logits, so
                that gradients with respect to every kept activation can follow
                (:meth:`Trace.gradients`). Everything before that layer runs without history
                (it needs none), and the earliest kept activation is a leaf. Otherwise the whole
                pass runs under ``no_grad`` and the trace holds no graph at all.
            amp: on CUDA, run under ``torch.autocast`` (float16); logits come back as float32.

        Returns:
            A :class:`Trace` whose activations are exactly the tensors the forward pass used.

        Raises:
            TypeError, ValueError: a bad input (not a tensor, wrong rank or channel count) or an
                unknown layer name.
        """
        x = self.check_input(x)
        wanted = set(self.resolve_layers(layers))
        if not wanted and keep_graph:
            raise ValueError("keep_graph=True needs at least one layer to take gradients at")
        order = {name: i for i, name in enumerate(self.tap_names)}
        first = min(wanted, key=order.__getitem__) if wanted else None
        activations: dict[str, Tensor] = {}

        def record(name: str, tensor: Tensor) -> Tensor:
            if keep_graph and name == first:
                # The graph starts here: a leaf that requires grad, and history from now on.
                tensor = tensor.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
            if name in wanted:
                activations[name] = tensor
            return tensor

        use_amp = amp and x.device.type == "cuda"
        with torch.no_grad(), torch.autocast("cuda", enabled=use_amp):
            # no_grad restores the caller's grad mode on exit, also after record() enabled it.
            logits = self.forward_head(self.forward_features(x, record))
        activations = dict(sorted(activations.items(), key=lambda kv: order[kv[0]]))
        return Trace(logits=logits.float(), activations=activations, inputs=x,
                     multilabel=self.config.multilabel, config=self.config)

    # --- resuming from a layer -------------------------------------------------------------

    def resume_inputs(self, layer: str) -> list[str]:
        """The traced tensors, besides ``layer`` itself, that :meth:`forward_from` needs.

        Inside a dense block, later layers read the block input and every earlier layer's maps,
        so resuming from dense layer l needs those; from any other tap nothing else is needed.

        Args:
            layer: a name from :attr:`tap_names`.

        Returns:
            Tap names in forward order (empty outside dense blocks).
        """
        self.resolve_layers(layer)
        found = topology(self.config).locate(layer)
        if found is None:
            return []
        block, node = found
        return [block.input_name] + block.dense_layers[:node - 1]

    def forward_from(self, layer: str, activation: Tensor,
                     trace: Trace | Mapping[str, Tensor] | None = None) -> Tensor:
        """Run the network from a traced layer to the logits, given that layer's activation.

        Equal to the full forward when ``activation`` is the traced one; with a modified, batched
        activation (one channel ablated per sample, say) it pays only for the rest of the network.
        No hooks and no state: it only calls the modules after ``layer``, in the caller's grad mode.

        Args:
            layer: a name from :attr:`tap_names`.
            activation: (B, C, h, w), the layer's output (possibly modified); any batch size B.
            trace: the trace (or a name -> tensor mapping) holding :meth:`resume_inputs` of
                ``layer``; each of them has batch size B or 1 (then it is shared by all B
                samples). Not needed outside dense blocks.

        Returns:
            Logits (B, num_classes).

        Raises:
            ValueError: an unknown layer, a missing or mis-shaped tensor.
            TypeError: ``activation`` is not a 4-D tensor.
        """
        if not isinstance(activation, Tensor) or activation.dim() != 4:
            raise TypeError(f"activation must be a (B, C, h, w) tensor, got "
                            f"{tuple(activation.shape) if isinstance(activation, Tensor) else type(activation).__name__}")
        self.resolve_layers(layer)
        found = topology(self.config).locate(layer)  # (block, node) inside a dense block, else None
        saved = trace.activations if isinstance(trace, Trace) else (trace or {})
        known = saved.get(layer)
        if known is not None and tuple(known.shape[1:]) != tuple(activation.shape[1:]):
            raise ValueError(f"activation for {layer!r} has shape {tuple(activation.shape)}; "
                             f"the traced one is {tuple(known.shape)}")
        n = activation.shape[0]

        def stored(name: str) -> Tensor:
            if name not in saved:
                raise ValueError(f"forward_from({layer!r}) needs {name!r} from the trace; trace it "
                                 f"(model.resume_inputs({layer!r}) lists what is needed)")
            t = saved[name]
            if t.shape[0] == n:
                return t
            if t.shape[0] == 1:
                return t.expand(n, *t.shape[1:])
            raise ValueError(f"traced {name!r} has batch size {t.shape[0]}; the activation has {n}")

        x, resumed = activation, layer
        if found is not None:
            block, node = found
            features = [stored(name) for name in self.resume_inputs(layer)] + [activation]
            for dense_layer in list(self.get_submodule(block.name).values())[node:]:
                features.append(dense_layer(features))
            x, resumed = torch.cat(features, 1), block.name  # (B, C0 + L*k, h, w)
        children = list(self.features.named_children())
        start = [f"features.{name}" for name, _ in children].index(resumed) + 1
        for _, module in children[start:]:
            x = module(x)
        return self.forward_head(x)

    def extra_repr(self) -> str:
        return f"config={self.config}"
