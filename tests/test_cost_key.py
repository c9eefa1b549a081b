"""Canonical stage keys: name-independent, order-independent where order does not matter, and fast == plain."""

from hypothesis import given, settings
from hypothesis import strategies as st
from random_graphs import random_graphs

from ios_core import models
from ios_core.cost.key import StageKeys, content_space, digest, key_text, stage_key
from ios_core.ir import GraphBuilder
from ios_core.models.demo import demo
from ios_core.schedule import Group, Stage


def text(graph, stage, batch=1):
    return key_text(stage_key(graph, stage, batch))


def test_inception_repeated_blocks_share_their_stage_keys():
    g = models.get("inception_v3")

    def stage(block):  # the 1x1 branch beside the first two convolutions of the 7x7 branch
        nodes = g.blocks[block].nodes
        return Stage((Group((nodes[0],)), Group((nodes[1], nodes[2]))))

    # Blocks 6 and 7 are InceptionC with 160 channels in the 7x7 branches; block 5 has 128.
    assert text(g, stage(6)) == text(g, stage(7))
    assert text(g, stage(5)) != text(g, stage(6))


def test_renaming_every_operator_keeps_the_key():
    def build(prefix):
        b = GraphBuilder("g", 4, 6, 6)
        x = b.conv(b.input, 4, 1, name=f"{prefix}a")
        y = b.conv(x, 4, 3, padding=1, name=f"{prefix}b")
        b.end_block(b.add(x, y, name=f"{prefix}c"))
        return b.build()

    g1, g2 = build("p"), build("q")
    s1 = Stage((Group(("pa", "pb", "pc")),))
    s2 = Stage((Group(("qa", "qb", "qc")),))
    assert text(g1, s1) == text(g2, s2)


def test_group_order_does_not_matter_but_batch_chain_order_and_merge_do():
    g = demo()
    ab = Stage((Group(("conv2",)), Group(("conv3",))))
    ba = Stage((Group(("conv3",)), Group(("conv2",))))
    assert text(g, ab) == text(g, ba)
    assert text(g, ab, 1) != text(g, ab, 2)
    assert text(g, ab) != text(g, Stage((Group(("conv2", "conv3"), merge=True),)))
    assert text(g, Stage((Group(("conv2", "conv3"), merge=True),))) == text(
        g, Stage((Group(("conv3", "conv2"), merge=True),))
    )


def test_a_read_inside_the_group_is_told_apart_from_a_read_of_an_earlier_stage():
    g = demo()
    inside = Stage((Group(("conv4", "seq1")),))  # seq1 reads conv4 within its own group
    key = stage_key(g, inside, 1)
    sources = key.groups[0].ops[1].operands[0].terms[0]
    assert sources == (("group", 0, 8, 16),)
    assert stage_key(g, Stage((Group(("seq1",)),)), 1).groups[0].ops[0].operands[0].terms[0] == (("input", 8, 16, 16),)


def test_digest_is_stable_text():
    assert digest("batch 1: chain[x]") == digest("batch 1: chain[x]")
    assert len(digest("anything")) == 32


@st.composite
def graph_and_stage(draw):
    g = draw(random_graphs(max_ops=8, blocks=1))
    names = [n.name for n in g.operators]
    picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    cut = draw(st.integers(0, len(picked)))
    groups = tuple(Group(tuple(part)) for part in (picked[:cut], picked[cut:]) if part)
    return g, Stage(groups), draw(st.integers(1, 4))


@settings(max_examples=60, deadline=None)
@given(graph_and_stage())
def test_fast_keys_equal_the_plain_definition(case):
    g, stage, batch = case
    keys = StageKeys(g)
    assert keys.text(stage, batch) == text(g, stage, batch)
    assert keys.text(stage, batch) == keys.text(stage, batch)  # and again, from its caches


def test_a_content_space_is_readable_names_then_a_digest_of_every_input():
    inputs = {"device": {"launch_us": 50, "name": "h100"}, "precision": "fp32", "shape": [1, 2.5]}
    space = content_space(inputs, "simulated", "h100", "fp32")
    assert space.startswith("simulated/h100/fp32/") and len(space.rsplit("/", 1)[1]) == 32
    same = {"shape": (1.0, 2.5), "precision": "fp32", "device": {"name": "h100", "launch_us": 50.0}}
    assert content_space(same, "simulated", "h100", "fp32") == space  # key order and a number's spelling do not matter
    for changed in ({**inputs, "precision": "fp32-strict"}, {**inputs, "device": {"launch_us": 51, "name": "h100"}},
                    {**inputs, "shape": [True, 2.5]}):  # a bool is not the number 1
        assert content_space(changed, "simulated", "h100", "fp32") != space
