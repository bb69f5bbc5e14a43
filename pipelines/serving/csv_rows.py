"""Feature rows as SageMaker's text/csv: what an endpoint request and a Batch Transform input part hold.

One row per line, no header, float32 values in their shortest exact form (what predict_fn scores), an empty field
for a missing value. inference.py's input_fn reads it back to the same float32 matrix.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

CSV = "text/csv"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's limit on one request body and on one Batch Transform mini-batch


def csv_payload(matrix: np.ndarray) -> bytes:
    """Rows as CSV lines without a header: float32 shortest round-trip text, NaN as an empty field."""
    values = np.asarray(matrix, dtype=np.float32)  # what predict_fn scores: the float32 of each value, exactly
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D matrix of feature rows, got an array of shape {values.shape}")
    table = pa.table({f"f{i}": pa.array(values[:, i], from_pandas=True) for i in range(values.shape[1])})
    buffer = io.BytesIO()
    pcsv.write_csv(table, buffer, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    return buffer.getvalue()
