"""Train the XGBoost alarm model on window files; runs locally and as a SageMaker script-mode entry point.

Locally:
    python -m pipelines.training.train --train DIR --validation DIR --model-dir DIR --feature-set signals6

In a SageMaker training job the channels and the model folder come from SM_CHANNEL_TRAIN,
SM_CHANNEL_VALIDATION and SM_MODEL_DIR, and hyperparameters arrive as `--key value`
(`--max_depth 7 --eta 0.1 --num_round 200`). Any `--key value` this script does not know is handed to
XGBoost as a booster parameter.

Output: `model.tar.gz` holding `xgboost-model` (Booster.save_model) and `feature_names.json`, with a copy
of `feature_names.json` beside it. Inside SageMaker (SM_TRAINING_ENV set) the platform packs the model
folder into model.tar.gz itself, so the two files are written loose there.

The model is trained on plain numpy arrays (no feature names in the booster), so the inference container
can score CSV rows in `feature_names` order. Missing days are NaN; `--missing-as -1` exists only to
reproduce the reference solution's encoding.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

MODEL_FILE = "xgboost-model"
FEATURE_NAMES_FILE = "feature_names.json"
ARCHIVE_FILE = "model.tar.gz"
LABEL_COLUMN = "label"

# Booster parameters this script sets unless told otherwise (hyperparameters override them).
DEFAULT_PARAMS: dict[str, object] = {
    "objective": "binary:logistic",
    "max_depth": 6,
    "eta": 0.1,
    "min_child_weight": 1.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "tree_method": "hist",
    "seed": 0,
}
KNOWN_PARAMS = {"max_depth": int, "eta": float, "gamma": float, "min_child_weight": float, "subsample": float,
                "colsample_bytree": float, "scale_pos_weight": float, "lambda": float, "alpha": float,
                "max_delta_step": float, "seed": int, "nthread": int, "objective": str, "tree_method": str}


def feature_columns(feature_set: str) -> list[str]:
    """The window columns of a feature set, in the order the model sees them (signals6: the 84 reference values)."""
    if __package__ in (None, ""):
        # Run as a plain script (SageMaker's entry point): make the `pipelines` package importable.
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from pipelines.features.window_signals import feature_columns as columns

    return columns(feature_set)


def window_files(path: str | Path) -> list[Path]:
    """Parquet and CSV files under a channel folder (or the file itself), in name order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"window input {path}: no such file or folder")
    suffixes = (".parquet", ".csv", ".csv.gz")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes)
                   and not p.name.startswith((".", "_")))
    if not files:
        raise FileNotFoundError(f"window input {path}: no .parquet, .csv or .csv.gz files")
    return files


def read_windows(path: str | Path) -> pd.DataFrame:
    """All window rows in a channel folder (Parquet or CSV with a header row) as one DataFrame."""
    frames = [pd.read_parquet(f) if f.name.endswith(".parquet") else pd.read_csv(f) for f in window_files(path)]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def labelled(windows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose label was observed (the horizon not yet over leaves it NULL), labels checked to be 0 or 1."""
    if LABEL_COLUMN not in windows.columns:
        raise ValueError(f"windows have no {LABEL_COLUMN!r} column; columns: {', '.join(map(str, windows.columns[:8]))}, ...")
    rows = windows[windows[LABEL_COLUMN].notna()]
    bad = {float(v) for v in pd.unique(rows[LABEL_COLUMN].astype(float))} - {0.0, 1.0}
    if bad:
        raise ValueError(f"column {LABEL_COLUMN!r}: values {sorted(bad)} found, expected 0, 1 or NULL")
    return rows.reset_index(drop=True)


def feature_matrix(windows: pd.DataFrame, feature_names: Sequence[str], missing_as: float | None = None) -> np.ndarray:
    """The feature columns as a float32 array; missing stays NaN unless `missing_as` (the reference's -1) is given."""
    absent = [c for c in feature_names if c not in windows.columns]
    if absent:
        raise ValueError(f"windows lack {len(absent)} feature column(s) of the feature set, e.g. {', '.join(absent[:5])}")
    matrix = windows[list(feature_names)].astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
    if missing_as is not None:
        matrix = np.where(np.isnan(matrix), np.float32(missing_as), matrix)
    return matrix


def label_vector(windows: pd.DataFrame) -> np.ndarray:
    """The label column as a float32 array (rows must be labelled)."""
    return windows[LABEL_COLUMN].astype("float64").to_numpy(dtype=np.float32)


def train_booster(x_train: np.ndarray, y_train: np.ndarray, params: dict[str, object], num_round: int,
                  x_validation: np.ndarray | None = None, y_validation: np.ndarray | None = None,
                  early_stopping_rounds: int | None = None, verbose: bool = True) -> xgb.Booster:
    """XGBoost with exactly `params` on numpy arrays (NaN = missing); logs train/validation logloss and AUC."""
    dtrain = xgb.DMatrix(x_train, label=y_train, missing=np.nan)
    evals = [(dtrain, "train")]
    if x_validation is not None and y_validation is not None and len(y_validation):
        evals.append((xgb.DMatrix(x_validation, label=y_validation, missing=np.nan), "validation"))
    metrics = ["logloss"]
    # AUC is undefined when an evaluation set holds one class only.
    if all(len(np.unique(d.get_label())) == 2 for d, _ in evals):
        metrics.append("auc")
    booster_params = {**params, "eval_metric": metrics}
    stop = early_stopping_rounds if len(evals) > 1 else None
    booster = xgb.train(booster_params, dtrain, num_boost_round=num_round, evals=evals,
                        early_stopping_rounds=stop, verbose_eval=verbose)
    if stop:
        # Keep the trees up to the best round only, so every consumer of the saved model predicts the same.
        booster = booster[: booster.best_iteration + 1]
    return booster


def model_metadata(feature_set: str, feature_names: Sequence[str], missing_as: float | None,
                   params: dict[str, object], num_round: int, rounds_kept: int) -> dict:
    """What `feature_names.json` holds: the column order a request must follow and how missing values are encoded."""
    return {"feature_set": feature_set, "feature_names": list(feature_names),
            "missing_as": None if missing_as is None else float(missing_as),
            "params": dict(params), "num_round": num_round, "rounds_kept": rounds_kept}


def write_model(booster: xgb.Booster, metadata: dict, model_dir: str | Path, package: bool) -> list[Path]:
    """Write `xgboost-model` and `feature_names.json`, packed in model.tar.gz (package) or loose; atomic per file."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    metadata_bytes = (json.dumps(metadata, indent=2) + "\n").encode()
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".tmp-") as tmp:
        # JSON: any XGBoost since 1.0 recognises it by content, whatever the file is called.
        model_path = Path(tmp) / f"{MODEL_FILE}.json"
        booster.save_model(model_path)
        if not package:
            _atomic_write(model_dir / MODEL_FILE, model_path.read_bytes())
            _atomic_write(model_dir / FEATURE_NAMES_FILE, metadata_bytes)
            return [model_dir / MODEL_FILE, model_dir / FEATURE_NAMES_FILE]
        archive = _tar_gz({MODEL_FILE: model_path.read_bytes(), FEATURE_NAMES_FILE: metadata_bytes})
    _atomic_write(model_dir / ARCHIVE_FILE, archive)
    _atomic_write(model_dir / FEATURE_NAMES_FILE, metadata_bytes)
    return [model_dir / ARCHIVE_FILE, model_dir / FEATURE_NAMES_FILE]


def _tar_gz(members: dict[str, bytes]) -> bytes:
    """A gzipped tar of in-memory files with fixed times and owners, so the same model gives the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _missing_as(text: str) -> float | None:
    value = text.strip().lower()
    return None if value in ("", "nan", "none", "null") else float(value)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _extra_params(extra: list[str]) -> dict[str, object]:
    """`--key value` pairs this script does not define, as booster parameters (numbers parsed)."""
    params: dict[str, object] = {}
    i = 0
    while i < len(extra):
        key = extra[i]
        if not key.startswith("--") or i + 1 >= len(extra) or extra[i + 1].startswith("--"):
            raise SystemExit(f"train.py: unexpected argument {key!r}: hyperparameters come as --key value")
        text = extra[i + 1]
        try:
            value: object = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = text
        params[key[2:].replace("-", "_")] = value
        i += 2
    return params


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, dict[str, object]]:
    """Arguments with SageMaker's environment as defaults; returns the namespace and the booster parameters."""
    env = os.environ
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=env.get("SM_CHANNEL_TRAIN"), help="folder (or file) of training windows")
    parser.add_argument("--validation", default=env.get("SM_CHANNEL_VALIDATION"),
                        help="folder (or file) of validation windows (optional)")
    parser.add_argument("--model-dir", "--model_dir", dest="model_dir", default=env.get("SM_MODEL_DIR"))
    parser.add_argument("--feature-set", "--feature_set", dest="feature_set", default="signals6")
    parser.add_argument("--num-round", "--num_round", dest="num_round", type=int, default=200)
    parser.add_argument("--early-stopping-rounds", "--early_stopping_rounds", dest="early_stopping_rounds",
                        type=int, default=None)
    parser.add_argument("--missing-as", "--missing_as", dest="missing_as", type=_missing_as, default=None,
                        help="encode missing days as this value (reference baseline: -1); default NaN")
    parser.add_argument("--package", type=_bool, default=None,
                        help="write model.tar.gz (default: yes, except inside SageMaker, which packs the folder)")
    parser.add_argument("--verbose", type=_bool, default=True)
    for name, kind in KNOWN_PARAMS.items():
        parser.add_argument(f"--{name}", type=kind, default=None)
    args, extra = parser.parse_known_args(argv)
    if not args.train:
        parser.error("--train (or SM_CHANNEL_TRAIN) is required")
    if not args.model_dir:
        parser.error("--model-dir (or SM_MODEL_DIR) is required")
    if args.num_round < 1:
        parser.error(f"--num_round {args.num_round}: must be at least 1")
    if args.package is None:
        args.package = "SM_TRAINING_ENV" not in env
    params = {name: getattr(args, name) for name in KNOWN_PARAMS if getattr(args, name) is not None}
    if "nthread" not in params and env.get("SM_NUM_CPUS"):
        params["nthread"] = int(env["SM_NUM_CPUS"])
    return args, {**params, **_extra_params(extra)}


def main(argv: Sequence[str] | None = None) -> int:
    """Read the channels, train, write the model folder; returns 0."""
    args, params = parse_args(argv)
    names = feature_columns(args.feature_set)
    train = labelled(read_windows(args.train))
    if train.empty:
        raise SystemExit(f"train.py: no labelled rows in {args.train}")
    x_train, y_train = feature_matrix(train, names, args.missing_as), label_vector(train)
    x_validation = y_validation = None
    if args.validation and Path(args.validation).exists():
        validation = labelled(read_windows(args.validation))
        x_validation, y_validation = feature_matrix(validation, names, args.missing_as), label_vector(validation)
    params = {**DEFAULT_PARAMS, **params}
    booster = train_booster(x_train, y_train, params, args.num_round, x_validation, y_validation,
                            args.early_stopping_rounds, verbose=args.verbose)
    metadata = model_metadata(args.feature_set, names, args.missing_as, params, args.num_round,
                              booster.num_boosted_rounds())
    written = write_model(booster, metadata, args.model_dir, package=args.package)
    positives = int(y_train.sum())
    print(f"trained on {len(y_train)} windows ({positives} positive), {len(names)} features "
          f"({args.feature_set}, missing as {'NaN' if args.missing_as is None else args.missing_as}); "
          f"wrote {', '.join(str(p) for p in written)}")
    return 0


def load_booster(model_dir: str | Path) -> tuple[xgb.Booster, dict]:
    """The booster and metadata from a model folder: model.tar.gz, or loose files as SageMaker unpacks them."""
    model_dir = Path(model_dir)
    archive = model_dir / ARCHIVE_FILE
    booster = xgb.Booster()
    if archive.exists():
        with tarfile.open(archive, "r:gz") as tar:
            model_bytes = tar.extractfile(MODEL_FILE).read()
            metadata = json.loads(tar.extractfile(FEATURE_NAMES_FILE).read())
        booster.load_model(bytearray(model_bytes))
    else:
        booster.load_model(bytearray((model_dir / MODEL_FILE).read_bytes()))
        metadata = json.loads((model_dir / FEATURE_NAMES_FILE).read_text())
    return booster, metadata


def predict(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """Probabilities for rows of a feature matrix in `feature_names` order (NaN = missing)."""
    return booster.predict(xgb.DMatrix(matrix, missing=math.nan))


if __name__ == "__main__":
    sys.exit(main())
