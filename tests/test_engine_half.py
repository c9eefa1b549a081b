"""fp16 and bf16 in the engine, without a GPU: element types, arena sizes, weight packs, kernel names and launches."""

from __future__ import annotations

import pytest

from ios_core.engine.elements import ENGINE_PRECISIONS, element_of
from ios_core.precision import PRECISIONS


def test_every_engine_precision_has_its_element_and_the_rest_are_refused_by_name():
    for precision in PRECISIONS:
        if precision in ENGINE_PRECISIONS:
            assert element_of(precision).itemsize in (2, 4)
        else:
            with pytest.raises(ValueError, match=precision):
                element_of(precision)
