"""The class table and the codings of LCZ.md."""

import numpy as np
import pytest

from lcz_core.errors import LczError
from lcz_core.lcz import (
    CLASS_BY_CODE,
    LczCodingError,
    apply_lookup,
    as_mapping,
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
    with pytest.raises(LczCodingError, match=r"values 0, 255 .*mapping.*give nodata 0") as error:
        detect_coding([0, 1, 255])
    assert error.value.parameter == "mapping"
    assert "0:17" not in str(error.value) and "0:G" not in str(error.value)


def test_built_classes_alone_prove_no_coding():
    with pytest.raises(
        LczCodingError, match=r"values 1, 2, 5 are all 1-10.*coding 'lcz17'"
    ) as error:
        detect_coding([1, 2, 5])
    assert error.value.parameter == "coding"
    # a coding the source declares (file tag, colour table, layout, named class field) settles it
    assert detect_coding([1, 2, 5], assume="lcz17") == "lcz17"
    assert resolve_lookup("lcz17", [1, 2, 5]) == ("lcz17", {c: c for c in range(1, 18)})


def test_undeclared_zero_asks_for_nodata_never_for_water():
    with pytest.raises(LczCodingError, match="value 0 .*give nodata 0") as error:
        detect_coding([0, 1, 11, 17])
    assert error.value.parameter == "nodata" and ":17" not in str(error.value)
    with pytest.raises(LczCodingError, match="give label_nodata 0") as error:
        resolve_lookup("lcz17", [0, 3], prefix="label_")
    assert error.value.parameter == "label_nodata"
    # attribute values have no nodata parameter: the fix is the field or a mapping
    with pytest.raises(LczCodingError, match="choose the field") as error:
        resolve_lookup("auto", [0, 3, 12], raster=False)
    assert error.value.parameter == "class_field" and "nodata 0" not in str(error.value)


def test_probabilities_are_not_classes():
    with pytest.raises(LczCodingError, match="look like probabilities") as error:
        detect_coding(range(0, 101, 3))
    assert error.value.parameter == "band"


def test_a_to_g_written_two_ways_is_refused():
    with pytest.raises(LczCodingError, match="both as 11-17 and as 101-107") as error:
        detect_coding([1, 11, 101])
    assert error.value.parameter == "mapping"


def test_wudapt_translates_to_internal_codes():
    values = np.array([[1, 10, 101], [104, 107, -1]])
    coding, table = resolve_lookup("auto", [1, 10, 101, 104, 107])
    codes = apply_lookup(values, table, values != -1)
    assert coding == "wudapt"
    assert codes.tolist() == [[1, 10, 11], [14, 17, 0]]


def test_a_mapping_translates_every_value_or_is_refused():
    mapping = parse_mapping("0:G, 255:nodata, 7:3")
    assert mapping == {0: 17, 255: 0, 7: 3}
    with pytest.raises(
        LczCodingError, match=r"values 1 are present but not in the mapping"
    ) as error:
        resolve_lookup("auto", [0, 1, 7, 255], mapping)
    assert error.value.parameter == "mapping"
    coding, table = resolve_lookup("auto", [0, 1, 7, 255], {**mapping, 1: 1})
    assert coding == "mapping"
    values = np.array([0, 1, 7, 255])
    assert apply_lookup(values, table, np.ones(4, bool)).tolist() == [17, 1, 3, 0]
    with pytest.raises(LczCodingError, match="leave coding at 'auto'") as error:
        resolve_lookup("wudapt", [1, 7], {1: 1, 7: 3})
    assert error.value.parameter == "mapping"


def test_mapping_as_a_table():
    # a TOML table has text keys; targets may be codes, letters or nodata
    assert parse_mapping({"42": "G", "7": 3, "255": "nodata"}) == {42: 17, 7: 3, 255: 0}
    assert as_mapping("") is None and as_mapping(None) is None
    assert as_mapping({1: 101}) == {1: 11}


def test_unknown_values_in_a_declared_coding_are_named():
    with pytest.raises(LczCodingError, match=r"values 101 .*'lcz17'"):
        resolve_lookup("lcz17", [1, 101])
    with pytest.raises(LczCodingError, match="unknown LCZ coding 'lcz42'") as error:
        resolve_lookup("lcz42", [1, 11])
    assert error.value.parameter == "coding"


@pytest.mark.parametrize("text", ["3", "a:b", "1:Z", ""])
def test_bad_mapping_is_refused(text):
    with pytest.raises(LczError) as error:
        parse_mapping(text)
    assert error.value.parameter == "mapping"


def test_one_hot_so2sat_labels():
    one_hot = np.eye(17)[[0, 10, 16]]
    assert decode_one_hot(one_hot).tolist() == [1, 11, 17]
    with pytest.raises(LczCodingError):
        decode_one_hot(np.ones((2, 17)))
