"""Where each node's output lives: its own buffer, or a channel range of another node's buffer.

Three rules place an output inside another one, so that concatenation and splitting copy nothing:

1. an identity that concatenates whole outputs *hosts* them: each producer writes straight into
   its slice of the identity's buffer, so the identity (a block's exit, typically) costs nothing;
2. the members of a *merged* group live side by side in the merged convolution's output. When an
   identity hosts all of them, in the merge's order and side by side (a fire module's two expand
   convolutions), the merged output itself lives there; when it hosts only some, the merged
   convolution writes their channels too and its group copies them home (`ios_core.engine.lower`);
3. an identity whose operand already lies contiguously in one buffer is an *alias*: a view of it.

Rule 1 goes first so that where a node lives never depends on the schedule's merges: an
identity costs nothing whether or not its producers were merged, and a merge pays for its own
copies, so a stage costs the same profiled alone as inside any schedule (the DP's assumption).
A node is placed at most once; everything placed nowhere is a *root* and gets a buffer of its
own. Parents always come later in topological order than their children (an identity reads what
it hosts), so following ``host`` links always ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ios_core.ir import Graph, Identity, Slice, Value, is_placeholder

MERGE_PREFIX = "merge:"


def merge_key(ops: Iterable[str]) -> str:
    """The name of the buffer a merged group writes."""
    return MERGE_PREFIX + "+".join(ops)


@dataclass(frozen=True)
class Placement:
    """``host[name] = (parent, channel)``: node ``name``'s output is channels from ``channel`` on of ``parent``'s."""

    host: Mapping[str, tuple[str, int]]
    aliases: frozenset[str]
    merge_channels: Mapping[str, int]

    def resolve(self, name: str, channel: int = 0) -> tuple[str, int]:
        """The root holding channel ``channel`` of ``name``'s output, and that channel's index in the root."""
        while name in self.host:
            name, offset = self.host[name]
            channel += offset
        return name, channel

    def resolve_slice(self, s: Slice) -> tuple[str, int]:
        return self.resolve(s.node, s.begin)

    def contiguous(self, value: Value) -> tuple[str, int] | None:
        """``(root, first channel)`` when the value is one term lying contiguously in one root, else None."""
        if len(value.terms) != 1:
            return None
        root, start = self.resolve_slice(value.terms[0][0])
        expected = start
        for s in value.terms[0]:
            if self.resolve_slice(s) != (root, expected):
                return None
            expected += s.channels
        return root, start


def _side_by_side(graph: Graph, ops: tuple[str, ...], hosts: Mapping[str, tuple[str, int]]) -> tuple[str, int] | None:
    """``(parent, channel)`` when one parent hosts every member of a merge, in order and adjacent, else None."""
    if ops[0] not in hosts:
        return None
    parent, start = hosts[ops[0]]
    channel = start
    for name in ops:
        if hosts.get(name) != (parent, channel):
            return None
        channel += graph.shapes[name].channels
    return parent, start


def place(graph: Graph, merges: Iterable[tuple[str, ...]] = (), host: bool = True) -> Placement:
    """Place every node of ``graph`` given its merged groups (rules in the module docstring; ``host=False`` skips 1)."""
    hosts: dict[str, tuple[str, int]] = {}
    parents: set[str] = set()
    identities = [n for n in graph.operators if isinstance(n.op, Identity) and len(n.inputs[0].terms) == 1]
    for node in identities if host else ():
        term = node.inputs[0].terms[0]
        counts = Counter(s.node for s in term)
        offset = 0
        for s in term:
            whole = s.begin == 0 and s.end == graph.shapes[s.node].channels
            if whole and counts[s.node] == 1 and s.node not in hosts and not is_placeholder(graph[s.node]):
                hosts[s.node] = (node.name, offset)
                parents.add(node.name)
            offset += s.channels
    merge_channels: dict[str, int] = {}
    for ops in merges:
        key, offset = merge_key(ops), 0
        if (home := _side_by_side(graph, ops, hosts)) is not None:
            hosts[key] = home
            for name in ops:
                del hosts[name]
        for name in ops:
            hosts.setdefault(name, (key, offset))
            offset += graph.shapes[name].channels
        merge_channels[key] = offset
    partial = Placement(hosts, frozenset(), merge_channels)  # shares ``hosts``: aliases see earlier aliases
    aliases = set()
    for node in identities:
        if node.name in hosts or node.name in parents:
            continue
        if (where := partial.contiguous(node.inputs[0])) is not None:
            hosts[node.name] = where
            aliases.add(node.name)
    return Placement(hosts, frozenset(aliases), merge_channels)
