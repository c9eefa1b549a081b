"""A hypothesis strategy for small random multi-branch graphs, shared by the property tests."""

from functools import reduce
from operator import add

from hypothesis import strategies as st

from ios_core.ir import Graph, GraphBuilder, concat


@st.composite
def random_graphs(draw, max_ops: int = 10, blocks: int = 2) -> Graph:
    """Random DAGs of convolutions, pools and element-wise adds in ``blocks`` blocks.

    Every value has 4 channels at 6x6 so any earlier value can feed any later node; operands are
    read whole, summed, or concatenated from two halves, so all operand forms appear. A block
    exits at the sum of its unread values, materialized by an identity.
    """
    b = GraphBuilder("random", channels=4, height=6, width=6)
    enter = b.input
    for _ in range(blocks):
        values, read = [enter], set()

        def operand(values=values, read=read):
            v = draw(st.sampled_from(values))
            read.add(v)
            return v

        for _ in range(draw(st.integers(1, max(1, max_ops // blocks)))):
            form = draw(st.sampled_from(["whole", "sum", "concat"]))
            x = {
                "whole": operand,
                "sum": lambda: operand() + operand(),
                "concat": lambda: concat([operand()[0:2], operand()[2:4]]),
            }[form]()
            kind = draw(st.sampled_from(["conv1", "conv3", "pool", "add"]))
            if kind == "conv1":
                values.append(b.conv(x, 4, 1, act=draw(st.sampled_from(["relu", "none"]))))
            elif kind == "conv3":
                values.append(b.conv(x, 4, 3, padding=1))
            elif kind == "pool":
                values.append(b.pool(x, draw(st.sampled_from(["max", "avg"])), 3, 1, 1))
            else:
                values.append(b.add(x, operand()))
        unread = [v for v in values[1:] if v not in read]
        enter = b.end_block(reduce(add, unread))
    return b.build()
