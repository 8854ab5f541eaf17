"""The class table and the codings of LCZ.md."""

import numpy as np
import pytest

from lcz_core.lcz import (
    CLASS_BY_CODE,
    LczCodingError,
    apply_lookup,
    code_from_text,
    decode_one_hot,
    detect_coding,
    parse_mapping,
    resolve_lookup,
)


def test_class_table_matches_the_reference():
    assert len(CLASS_BY_CODE) == 17
    assert CLASS_BY_CODE[1].color == "#8c0000" and CLASS_BY_CODE[1].name == "Compact high-rise"
    assert CLASS_BY_CODE[11].short == "A" and CLASS_BY_CODE[11].color == "#006a00"
    assert CLASS_BY_CODE[17].label == "LCZ G: Water" and CLASS_BY_CODE[17].rgb == (106, 106, 255)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1", 1),
        ("10", 10),
        ("A", 11),
        ("g", 17),
        ("LCZ E", 15),
        ("101", 11),
        ("107", 17),
        (" 4 ", 4),
    ],
)
def test_code_from_text(text, code):
    assert code_from_text(text) == code


@pytest.mark.parametrize("text", ["H", "0", "18", "108", "trees"])
def test_code_from_text_refuses_unknown(text):
    with pytest.raises(LczCodingError, match="not an LCZ class"):
        code_from_text(text)


def test_detect_coding():
    assert detect_coding([1, 2, 11, 17]) == "lcz17"
    assert detect_coding([1, 10, 101, 107]) == "wudapt"
    with pytest.raises(LczCodingError, match=r"values 0, 255 .*explicit class mapping"):
        detect_coding([0, 1, 255])


def test_wudapt_translates_to_internal_codes():
    values = np.array([[1, 10, 101], [104, 107, -1]])
    coding, table = resolve_lookup("auto", [1, 10, 101, 104, 107])
    codes = apply_lookup(values, table, values != -1)
    assert coding == "wudapt"
    assert codes.tolist() == [[1, 10, 11], [14, 17, 0]]


def test_explicit_mapping_overrides_and_declares_nodata():
    mapping = parse_mapping("0:G, 255:nodata, 7:3")
    assert mapping == {0: 17, 255: 0, 7: 3}
    coding, table = resolve_lookup("auto", [0, 1, 7, 255], mapping)
    values = np.array([0, 1, 7, 255])
    assert apply_lookup(values, table, np.ones(4, bool)).tolist() == [17, 1, 3, 0]


def test_unknown_values_in_a_declared_coding_are_named():
    with pytest.raises(LczCodingError, match=r"values 101 .*'lcz17'"):
        resolve_lookup("lcz17", [1, 101])


@pytest.mark.parametrize("text", ["3", "a:b", "1:Z"])
def test_bad_mapping_is_refused(text):
    with pytest.raises(ValueError):
        parse_mapping(text)


def test_one_hot_so2sat_labels():
    one_hot = np.eye(17)[[0, 10, 16]]
    assert decode_one_hot(one_hot).tolist() == [1, 11, 17]
    with pytest.raises(LczCodingError):
        decode_one_hot(np.ones((2, 17)))
