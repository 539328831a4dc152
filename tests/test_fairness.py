"""Long work in time-bounded chunks: the items per chunk follow the model's measured speed."""

from __future__ import annotations

import pytest

from dashboard import results, runtime
from densenet import explain


def _analysis(seconds: float | None) -> results.Analysis:
    return results.Analysis(key="k", trace=None, x=None, display=None, predictions=[], multilabel=False,
                            has_graph=False, seconds=seconds)


@pytest.mark.parametrize(("seconds", "expected"), [
    (None, runtime.CHUNK),  # unknown: the fixed size
    (0.0, runtime.CHUNK),
    (1e-4, runtime.CHUNK),  # a tiny model: never more than CHUNK
    (runtime.CHUNK_SECONDS / 2, min(2, runtime.CHUNK)),
    (runtime.CHUNK_SECONDS * 5, 1),  # slower than a chunk's time: one at a time, never zero
])
def test_chunk_size_fits_the_chunk_time(seconds, expected):
    assert runtime.chunk_size(seconds) == expected


def test_a_densenet121_forward_on_two_busy_cores_gives_chunks_of_one_image():
    # Measured in two browsers: 4 DenseNet-121 images per Occlusion chunk held the slot 0.4-1.8 s
    # while another session's sample switch waited; a trace took about 0.2 s.
    an = _analysis(0.2)
    assert results.chunk_size(an, explain.method("occlusion")) == 1
    assert results.chunk_size(an) == 1  # the checks' deletion/insertion forwards


def test_input_attributions_count_a_backward_per_item():
    an = _analysis(runtime.CHUNK_SECONDS / 8)
    forward_only = results.chunk_size(an, explain.method("occlusion"))
    with_backward = results.chunk_size(an, explain.method("integrated-gradients"))
    assert with_backward < forward_only
    assert with_backward == max(1, min(runtime.CHUNK, int(8 / 3)))
