"""The one precision vocabulary: names, storage types, tolerances against the float64 reference."""

import pytest

from ios_core.config import Precision
from ios_core.precision import FLOAT32_PRECISIONS, PRECISIONS, SPECS, TOLERANCE, check_precision, spec_of


def test_the_precisions_are_fp32_strict_and_the_two_half_ones():
    assert PRECISIONS == ("fp32", "fp32-strict", "fp16", "bf16")
    assert FLOAT32_PRECISIONS == ("fp32", "fp32-strict")


def test_each_precision_stores_its_element_type_in_its_bytes():
    assert {name: (s.dtype, s.element_bytes) for name, s in SPECS.items()} == {
        "fp32": ("float32", 4), "fp32-strict": ("float32", 4), "fp16": ("float16", 2), "bf16": ("bfloat16", 2)}
    assert [name for name, s in SPECS.items() if not s.tensor_cores] == ["fp32-strict"]


def test_the_tolerances_against_the_float64_reference():
    assert TOLERANCE == {"fp32": 1e-2, "fp32-strict": 1e-4, "fp16": 1e-2, "bf16": 3e-2}


@pytest.mark.parametrize("name", PRECISIONS)
def test_every_precision_is_a_config_precision(name):
    assert str(Precision[name]) == name == spec_of(name).name == check_precision(name)


def test_an_unknown_precision_is_a_value_error_naming_it():
    for call in (check_precision, spec_of):
        with pytest.raises(ValueError, match="'fp8'"):
            call("fp8")
