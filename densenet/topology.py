"""The shape of a DenseNet worked out from its config alone: links, channels, sizes, params, MACs, taps.

No weights are needed, so a classroom can bend the knobs and redraw instantly. This is the one index of
a network's layer names: where a block's input comes from, which dense layers it holds, which layers a
CAM explains by default (:attr:`Topology.cam_layers`, :func:`default_cam_layer`). The library and the
app read them here instead of rebuilding names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from torch import nn

from .config import STEMS, DenseNetConfig, Stem, transition_channels

if TYPE_CHECKING:
    from .model import DenseNet

#: The last feature map (BatchNorm after the last block); the head reads it.
FINAL_NORM = "features.norm5"


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table.

    Attributes:
        name: dotted module name (``features.denseblock1.denselayer3``).
        kind: ``stem``, ``dense_layer``, ``dense_block``, ``transition``, ``norm`` or ``classifier``.
        in_channels, out_channels: channels in and out (a dense layer outputs its k new maps).
        size: (h, w) of the output at the topology's input size.
        params: learnable parameters of this module (a block row sums its layers).
        macs: multiply-accumulates of its convolutions / linear layer for one image.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    size: tuple[int, int]
    params: int
    macs: int


@dataclass(frozen=True)
class ChannelSlice:
    """Channels ``[start, stop)`` of some input came from ``source``."""

    start: int
    stop: int
    source: str

    @property
    def channels(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class BlockInfo:
    """A dense block as a graph: node 0 is the block input, node l is dense layer l.

    Attributes:
        name: ``features.denseblockB``.
        input_name: the module that feeds the block (stem or previous transition).
        index: B, counted from 1.
        transition: the transition that follows the block; ``None`` after the last block (norm5 follows).
        num_layers: L.
        in_channels: c0, channels entering the block.
        growth_rate: k.
        out_channels: c0 + L*k.
        size: (h, w) inside the block.
        links: (source node, target node) for every dense connection: L(L+1)/2 of them.
    """

    name: str
    input_name: str
    num_layers: int
    in_channels: int
    growth_rate: int
    out_channels: int
    size: tuple[int, int]
    links: list[tuple[int, int]] = field(repr=False)
    index: int = 1
    transition: str | None = None

    @property
    def num_links(self) -> int:
        return len(self.links)

    @property
    def output_name(self) -> str:
        """What reads the block's concatenated output: its transition, or ``features.norm5``."""
        return self.transition or FINAL_NORM

    def layer_name(self, node: int) -> str:
        return self.input_name if node == 0 else f"{self.name}.denselayer{node}"

    @property
    def dense_layers(self) -> list[str]:
        """The names of dense layers 1..L, in order."""
        return [self.layer_name(node) for node in range(1, self.num_layers + 1)]

    def node_of(self, name: str) -> int:
        """The node of a layer name: 0 for the block input, l for dense layer l; KeyError otherwise."""
        if name == self.input_name:
            return 0
        prefix = f"{self.name}.denselayer"
        if name.startswith(prefix) and name[len(prefix):].isdigit() and 1 <= int(name[len(prefix):]) <= self.num_layers:
            return int(name[len(prefix):])
        raise KeyError(f"{name!r} is not a node of {self.name}")

    def in_channels_of(self, node: int) -> int:
        """Channels dense layer ``node`` reads: c0 + (l - 1)·k (the block's output for node L + 1)."""
        if not 1 <= node <= self.num_layers + 1:
            raise ValueError(f"layer {node} is not in a block of {self.num_layers} layers")
        return self.in_channels + (node - 1) * self.growth_rate

    def channels_after(self, node: int) -> int:
        """Channels of the concatenation once layer ``node`` has added its maps: c0 + l·k."""
        return self.in_channels_of(node + 1)

    def node_channels(self, node: int) -> tuple[int, int]:
        """The channel range node ``node`` occupies in the block's concatenated output."""
        if node == 0:
            return 0, self.in_channels
        start = self.in_channels_of(node)
        return start, start + self.growth_rate


@dataclass(frozen=True)
class Topology:
    """The one index of a network's shape: every layer name, channel count and size is read here.

    Attributes:
        config: the architecture.
        input_size: (h, w) of the input the sizes are worked out for.
        blocks: the dense blocks in order.
        layers: one row per module, in forward order (blocks followed by their layers).
    """

    config: DenseNetConfig
    input_size: tuple[int, int]
    blocks: list[BlockInfo]
    layers: list[LayerRow]

    @cached_property
    def rows(self) -> dict[str, LayerRow]:
        """Rows by layer name."""
        return {r.name: r for r in self.layers}

    @property
    def stem(self) -> Stem:
        return STEMS[self.config.stem]

    @property
    def stem_rows(self) -> list[LayerRow]:
        return [r for r in self.layers if r.kind == "stem"]

    def block(self, b: int) -> BlockInfo:
        """Dense block ``b``, counted from 1.

        Raises:
            ValueError: no such block.
        """
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= len(self.blocks):
            raise ValueError(f"block must be 1..{len(self.blocks)}, got {b!r}")
        return self.blocks[b - 1]

    def block_input(self, b: int) -> str:
        """The tap that feeds dense block ``b`` (the stem's last layer, or the transition before it)."""
        return self.block(b).input_name

    def dense_layers(self, b: int) -> list[str]:
        """The dense layers of block ``b``, in order."""
        return self.block(b).dense_layers

    @property
    def cam_layers(self) -> list[str]:
        """The layers a CAM explains when none are given: every dense block's output, then the last norm."""
        return [b.name for b in self.blocks] + [FINAL_NORM]

    def locate(self, name: str) -> tuple[BlockInfo, int] | None:
        """The block and node of a dense layer (node >= 1), or ``None`` for any other layer."""
        for b in self.blocks:
            if name.startswith(b.name + ".denselayer"):
                return b, b.node_of(name)
        return None

    @property
    def num_links(self) -> int:
        return sum(b.num_links for b in self.blocks)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.layers if r.kind != "dense_block")

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.layers if r.kind != "dense_block")

    def row(self, name: str) -> LayerRow:
        try:
            return self.rows[name]
        except KeyError:
            raise KeyError(f"no layer named {name!r}") from None

    def block_of(self, name: str) -> BlockInfo:
        for b in self.blocks:
            if name == b.name or name.startswith(b.name + "."):
                return b
        raise KeyError(f"{name!r} is not inside a dense block")

    def provenance(self, name: str) -> list[ChannelSlice]:
        """Which channel ranges of the input of ``name`` came from which earlier layer.

        For dense layer l of a block: the block input, then the k maps of each earlier layer.
        For a block (its output) or the transition after it: the block input and every layer.
        """
        try:
            block = self.block_of(name)
            found = self.locate(name)
            nodes = found[1] if found else block.num_layers + 1
        except KeyError:
            prev = self._block_before(name)
            if prev is None:
                raise KeyError(f"{name!r} has no dense-block input to trace") from None
            block, nodes = prev, prev.num_layers + 1
        return [ChannelSlice(*block.node_channels(n), block.layer_name(n)) for n in range(nodes)]

    def _block_before(self, name: str) -> BlockInfo | None:
        return next((b for b in self.blocks if b.output_name == name), None)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def default_cam_layer(model: Any) -> str:
    """The layer to explain first: the checkpoint's recommendation (``metadata["cam_layer"]``), else the last
    feature map (the last of :attr:`Topology.cam_layers`)."""
    layer = getattr(model, "metadata", {}).get("cam_layer")
    return layer if layer in model.tap_names else FINAL_NORM


def topology(model_or_config: DenseNet | DenseNetConfig | str, input_size: int | tuple[int, int] = 224) -> Topology:
    """Work out the graph, channel counts, sizes, parameters and MACs of a DenseNet.

    Args:
        model_or_config: a model, a config, or a name in ``VARIANTS``.
        input_size: side (or (h, w)) of the input image.

    Returns:
        A :class:`Topology`; for DenseNet-121 at 224: blocks with 21, 78, 300 and 136 links.
    """
    from .config import VARIANTS

    if isinstance(model_or_config, nn.Module):
        cfg = model_or_config.config
    elif isinstance(model_or_config, str):
        if model_or_config not in VARIANTS:
            raise ValueError(f"unknown variant {model_or_config!r}; known: {sorted(VARIANTS)}")
        cfg = VARIANTS[model_or_config]
    else:
        cfg = model_or_config
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if h < 1 or w < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")

    rows: list[LayerRow] = []
    c0 = cfg.num_init_features
    cin = cfg.in_channels
    stem = STEMS[cfg.stem]
    kk = stem.kernel * stem.kernel
    h, w = (_conv_out(s, stem.kernel, stem.stride, stem.kernel // 2) for s in (h, w))
    rows.append(LayerRow("features.conv0", "stem", cin, c0, (h, w), cin * c0 * kk, cin * c0 * kk * h * w))
    if stem.pool:
        rows.append(LayerRow("features.norm0", "stem", c0, c0, (h, w), 2 * c0, 0))
        h, w = _conv_out(h, 3, 2, 1), _conv_out(w, 3, 2, 1)
        rows.append(LayerRow("features.pool0", "stem", c0, c0, (h, w), 0, 0))
    input_name = rows[-1].name

    blocks: list[BlockInfo] = []
    k = cfg.growth_rate
    channels = c0
    for b, num_layers in enumerate(cfg.block_config, start=1):
        name = f"features.denseblock{b}"
        block_rows = []
        for layer in range(1, num_layers + 1):
            c = channels + (layer - 1) * k
            if cfg.bn_size is None:
                params, macs = 2 * c + c * k * 9, c * k * 9 * h * w
            else:
                width = cfg.bn_size * k
                params = 2 * c + c * width + 2 * width + width * k * 9
                macs = (c * width + width * k * 9) * h * w
            block_rows.append(LayerRow(f"{name}.denselayer{layer}", "dense_layer", c, k, (h, w), params, macs))
        out = channels + num_layers * k
        rows.append(LayerRow(name, "dense_block", channels, out, (h, w),
                             sum(r.params for r in block_rows), sum(r.macs for r in block_rows)))
        rows.extend(block_rows)
        links = [(s, t) for t in range(1, num_layers + 1) for s in range(t)]
        transition = f"features.transition{b}" if b < len(cfg.block_config) else None
        blocks.append(BlockInfo(name, input_name, num_layers, channels, k, out, (h, w), links, b, transition))
        channels = out
        if transition is not None:
            t_out = transition_channels(channels, cfg.compression)
            th, tw = h // 2, w // 2
            rows.append(LayerRow(transition, "transition", channels, t_out, (th, tw),
                                 2 * channels + channels * t_out, channels * t_out * h * w))
            input_name = transition
            channels, h, w = t_out, th, tw
    rows.append(LayerRow(FINAL_NORM, "norm", channels, channels, (h, w), 2 * channels, 0))
    outputs = cfg.num_classes - 1 if cfg.null_class else cfg.num_classes
    head_macs = channels * outputs * (h * w if cfg.pool == "lme" else 1)
    rows.append(LayerRow("classifier", "classifier", channels, cfg.num_classes, (1, 1),
                         channels * outputs + outputs, head_macs))
    return Topology(cfg, input_size if isinstance(input_size, tuple) else (input_size, input_size), blocks, rows)
