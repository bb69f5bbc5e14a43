"""pipelines/serving/csv_rows.py: feature rows as SageMaker text/csv, read back by inference.py to the same float32."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.serving import inference
from pipelines.serving.csv_rows import CSV, csv_payload


def test_the_csv_is_the_exact_float32_of_each_value_with_missing_fields_empty() -> None:
    matrix = np.array([[0.1, np.nan, -3.25e-7], [1e30, 2.0, np.nan]])
    assert csv_payload(matrix) == b"0.1,,-3.25e-7\n1e+30,2,\n"
    back = np.array([[float(v) if v else np.nan for v in line.split(",")]
                     for line in csv_payload(matrix).decode().splitlines()], dtype=np.float32)
    assert np.array_equal(back, matrix.astype(np.float32), equal_nan=True)


def test_inference_reads_the_payload_back_to_the_same_rows() -> None:
    matrix = np.random.default_rng(0).normal(size=(20, 84)).astype(np.float32)
    matrix[3, 7] = np.nan
    back = np.asarray(inference.input_fn(csv_payload(matrix).decode(), CSV), np.float32)
    assert np.array_equal(back, matrix, equal_nan=True)


def test_a_matrix_that_is_not_2_d_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected a 2-D matrix of feature rows, got an array of shape \(3,\)"):
        csv_payload(np.zeros(3))
