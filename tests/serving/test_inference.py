"""pipelines/serving/inference.py: the SageMaker handlers on real train.py models, as an endpoint would call them."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.features.window_signals import feature_columns
from pipelines.serving import inference
from pipelines.serving.inference import (
    CellGuardModel,
    InvalidInput,
    UnsupportedAccept,
    UnsupportedContentType,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)
from pipelines.training import train

NAMES = feature_columns("signals6")


def model_folder(tmp_path: Path, archive: bytes, loose: bool) -> Path:
    """A folder as SageMaker hands it to model_fn (loose files) or with the archive itself."""
    folder = tmp_path / ("loose" if loose else "packed")
    folder.mkdir()
    if loose:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(folder, filter="data")
    else:
        (folder / "model.tar.gz").write_bytes(archive)
    return folder


@pytest.fixture
def model(tmp_path: Path, archives: dict[str, bytes]) -> CellGuardModel:
    return model_fn(model_folder(tmp_path, archives["signals6"], loose=True))


def matrix_of(windows: pd.DataFrame, rows: int = 25) -> np.ndarray:
    """The first rows' features as train.py builds them (float32, NaN for missing)."""
    return train.feature_matrix(windows.iloc[:rows], NAMES)


def csv_body(matrix: np.ndarray) -> str:
    """Rows as the reference client sends them: comma-separated, no header, empty field for a missing value."""
    return "".join(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n" for row in matrix)


# ---------------------------------------------------------------------------------------------- model_fn


@pytest.mark.parametrize("loose", [True, False], ids=["loose files", "model.tar.gz"])
def test_model_fn_loads_what_train_wrote(tmp_path, archives, loose) -> None:
    model = model_fn(model_folder(tmp_path, archives["signals6"], loose))
    assert (model.feature_set, model.feature_names, model.missing_as) == ("signals6", tuple(NAMES), None)
    assert model.feature_count == 84 == model.booster.num_features()


def test_model_fn_names_what_is_missing(tmp_path, archives) -> None:
    with pytest.raises(FileNotFoundError, match="neither xgboost-model"):
        model_fn(tmp_path)
    folder = model_folder(tmp_path, archives["signals6"], loose=True)
    (folder / "feature_names.json").unlink()
    with pytest.raises(FileNotFoundError, match="xgboost-model without feature_names.json"):
        model_fn(folder)


def test_file_names_are_the_ones_train_writes() -> None:
    assert (inference.MODEL_FILE, inference.FEATURE_NAMES_FILE, inference.ARCHIVE_FILE) == (
        train.MODEL_FILE, train.FEATURE_NAMES_FILE, train.ARCHIVE_FILE)


def test_runs_in_a_sagemaker_container_with_only_numpy_and_xgboost(tmp_path, archives, windows) -> None:
    """Copied alone next to the unpacked model, as SageMaker's script mode runs it: nothing from `pipelines`."""
    shutil.copy(inference.__file__, tmp_path / "inference.py")
    folder = model_folder(tmp_path, archives["signals6"], loose=True)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import inference as h\n"
        "m = h.model_fn(sys.argv[2]); p = h.predict_fn(h.input_fn(sys.stdin.read(), 'text/csv'), m)\n"
        "print(h.output_fn(p, 'text/csv')[0], end='')\n"
        "leaked = sorted(n for n in sys.modules if n.split('.')[0] == 'pipelines')\n"
        "assert not leaked, leaked\n"
    )
    matrix = matrix_of(windows, rows=3)
    result = subprocess.run([sys.executable, "-I", "-c", script, str(tmp_path), str(folder)], input=csv_body(matrix),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    expected = train.predict(train.load_booster(folder)[0], matrix)
    assert np.array_equal(np.array(result.stdout.split(), dtype=np.float32), expected)


# ---------------------------------------------------------------------------------------------- scoring


def test_csv_rows_with_missing_values_score_exactly_as_train_predict(model, windows) -> None:
    matrix = matrix_of(windows)
    assert np.isnan(matrix).any()  # about 10% of the synthetic values are missing
    rows = input_fn(csv_body(matrix).encode(), "text/csv; charset=utf-8")
    assert rows.shape == (25, 84) and np.array_equal(np.isnan(rows), np.isnan(matrix))
    assert np.array_equal(predict_fn(rows, model), train.predict(model.booster, matrix))


def test_every_json_shape_reads_the_same_rows(model, windows) -> None:
    matrix = matrix_of(windows, rows=3)
    lists = [[None if np.isnan(v) else float(v) for v in row] for row in matrix]
    strings = [line for line in csv_body(matrix).splitlines()]
    expected = input_fn(csv_body(matrix), "text/csv")
    for body in ({"instances": lists}, {"instances": [{"features": row} for row in lists]},
                 {"instances": [{"features": s} for s in strings]}, lists, [{"features": s} for s in strings],
                 {"instances": strings}):
        assert np.array_equal(input_fn(json.dumps(body), "application/json"), expected, equal_nan=True), body
    # One row: the reference client's body (vin and date ride along), a bare list
    reference = {"vin": "LSVTEST0000000001", "date": "2026-03-01", "features": strings[0]}
    assert np.array_equal(input_fn(json.dumps(reference), "application/json"), expected[:1], equal_nan=True)
    assert np.array_equal(input_fn(json.dumps(lists[0]).encode(), "application/json"), expected[:1], equal_nan=True)


def test_missing_value_spellings_are_nan() -> None:
    rows = input_fn('1.5,, nan ,NaN,null,NA,None,"2"\r\n\n', "text/csv")
    assert rows.shape == (1, 8) and rows[0, 0] == 1.5 and rows[0, 7] == 2.0 and np.isnan(rows[0, 1:7]).all()
    assert np.isnan(input_fn('{"features": [1, null, ""]}', "application/json")[0, 1:]).all()


@pytest.mark.parametrize("rows", [
    [["1.5", "", " 2 ", "1_000", "-nan", "+.5", "3e2"]],
    [[1, 2.5, -3], [4, 5, 6]],
    [["1", "null"]],  # a spelling numpy refuses: the value-by-value path reads it as missing
    [['"1.5"', "2"]],  # a quoted CSV value: the value-by-value path strips the quotes
    [[1, None, 2]],
])
def test_the_one_call_fast_path_reads_rows_exactly_as_value_by_value(rows) -> None:
    fast = inference._parse_rows(rows, header_hint=False)
    slow = np.array([[inference._number(v, r + 1, c + 1, False) for c, v in enumerate(row)]
                     for r, row in enumerate(rows)])
    np.testing.assert_array_equal(fast, slow)
    plain = inference._plain_matrix(rows)
    assert (plain is None) == any(v in ("null", '"1.5"', None) for row in rows for v in row)


def test_missing_as_minus_one_model_gets_minus_one_for_missing(tmp_path, archives, windows) -> None:
    model = model_fn(model_folder(tmp_path, archives["signals6_minus1"], loose=False))
    assert model.missing_as == -1.0
    matrix = matrix_of(windows)
    expected = train.predict(model.booster, train.feature_matrix(windows.iloc[:25], NAMES, missing_as=-1.0))
    assert np.array_equal(predict_fn(input_fn(csv_body(matrix), "text/csv"), model), expected)


def test_output_csv_one_probability_per_line_and_json_like_sagemaker_xgboost() -> None:
    scores = np.array([0.123456789, 0.5, 1e-6], dtype=np.float32)
    body, content_type = output_fn(scores, "text/csv")
    assert (body, content_type) == ("0.12345679\n0.5\n1e-06\n", "text/csv")
    body, content_type = output_fn(scores, "application/json")
    assert content_type == "application/json"
    decoded = json.loads(body)
    assert list(decoded) == ["predictions"] and [set(p) for p in decoded["predictions"]] == [{"score"}] * 3
    assert np.array_equal(np.array([p["score"] for p in decoded["predictions"]], dtype=np.float32), scores)
    assert output_fn(scores, None)[1] == output_fn(scores, "*/*")[1] == "text/csv"
    assert output_fn(scores, "application/xml, application/json;q=0.9")[1] == "application/json"


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("body", "content_type", "message"), [
    ("1,2,3\n4,5\n", "text/csv", "row 2 has 2 values but row 1 has 3"),
    ("1,2,3\n4,abc,6\n", "text/csv", "row 2, column 2: 'abc' is not a number"),
    ("total_voltage_lag14,x\n1,2\n", "text/csv", "row 1, column 1: 'total_voltage_lag14' is not a number "
                                                 "(text/csv requests carry no header row)"),
    ("1,inf,3\n", "text/csv", "row 1, column 2: 'inf' is not a finite number"),
    ("1,2,1e39\n", "text/csv", "row 1, column 3: '1e39' is not a finite number"),
    ("\n \n", "text/csv", "empty text/csv request"),
    ('{"instances": [[1, 2], [3, true]]}', "application/json", "row 2, column 2: true is not a number"),
    ('{"instances": [[1, 2], [3, "x"]]}', "application/json", "row 2, column 2: 'x' is not a number"),
    ('{"instances": [[1, 2], 7]}', "application/json", "row 2: expected a list of values"),
    ('{"instances": []}', "application/json", "request holds no rows"),
    ('{"rows": [[1]]}', "application/json", "needs 'instances' (a list of rows) or 'features' (one row); keys: 'rows'"),
    ("{not json", "application/json", "request body is not valid JSON"),
    (b"1,\xff\n", "text/csv", "request body is not UTF-8 text"),
])
def test_bad_requests_say_which_row_and_what(body, content_type, message) -> None:
    with pytest.raises(InvalidInput) as caught:
        input_fn(body, content_type)
    assert message in str(caught.value)


def test_wrong_feature_count_names_the_feature_set(model) -> None:
    with pytest.raises(InvalidInput, match=r"expected 84 values per row for feature set signals6, got 83 in each of 2 rows"):
        predict_fn(input_fn("1," * 82 + "1\n" + "2," * 82 + "2\n", "text/csv"), model)
    with pytest.raises(InvalidInput, match=r"expected 84 values per row for feature set signals6, got 85$"):
        predict_fn(input_fn(json.dumps({"features": ",".join(["1"] * 85)}), "application/json"), model)


def test_unsupported_media_types_are_their_own_errors() -> None:
    with pytest.raises(UnsupportedContentType, match="content type 'text/libsvm' is not supported: send text/csv or "
                                                     "application/json"):
        input_fn("1 0:1", "text/libsvm")
    with pytest.raises(UnsupportedContentType, match="'no Content-Type'"):
        input_fn("1,2", None)
    with pytest.raises(UnsupportedAccept, match="accept 'application/x-recordio-protobuf' is not supported"):
        output_fn(np.zeros(1), "application/x-recordio-protobuf")
    assert issubclass(UnsupportedContentType, ValueError) and issubclass(UnsupportedAccept, InvalidInput)
