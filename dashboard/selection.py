"""Read what a click on a figure picked: plotly selection events as ``st.plotly_chart(on_select=...)`` stores them."""

from __future__ import annotations

from densenet.topology import BlockInfo


def selected_layer(event: object, block: BlockInfo) -> int | None:
    """The node a plotly selection event on :func:`connectivity_graph` picked, if any.

    Args:
        event: what ``st.plotly_chart(..., on_select=...)`` returned or stored under its key
            (``{"selection": {"points": [...]}}``).
        block: the block the figure shows.
    """
    try:
        points = event["selection"]["points"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    for point in points or []:
        name = point.get("customdata")
        if isinstance(name, list):
            name = name[0] if name else None
        for node in range(block.num_layers + 1):
            if block.layer_name(node) == name:
                return node
        row = point.get("y")  # a matrix cell without customdata: its row is the reading layer
        if isinstance(row, int) and 1 <= row <= block.num_layers:
            return row
    return None
