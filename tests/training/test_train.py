"""pipelines/training/train.py: local runs and SageMaker script mode, on synthetic windows where the label follows a feature."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from pipelines.features.window_signals import feature_columns
from pipelines.training.evaluation import roc_auc
from pipelines.training.train import feature_matrix, labelled, load_booster, main, predict, read_windows

from .builders import synthetic_windows

FAST = ["--num_round", "20", "--max_depth", "3", "--eta", "0.3", "--nthread", "1", "--verbose", "false"]
SM_VARIABLES = ("SM_MODEL_DIR", "SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_TRAINING_ENV", "SM_NUM_CPUS")


@pytest.fixture(autouse=True)
def no_sagemaker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SM_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def windows():
    return synthetic_windows(vehicles=12, days=80)


@pytest.fixture(scope="module")
def channels(tmp_path_factory, windows) -> dict[str, Path]:
    """Train windows as two Parquet partitions, validation windows as CSV with a header."""
    root = tmp_path_factory.mktemp("channels")
    train, validation = windows[windows["as_of"].astype(str) < "2026-02-20"], windows[windows["as_of"].astype(str) >= "2026-03-06"]
    for i, part in enumerate((train.iloc[: len(train) // 2], train.iloc[len(train) // 2:])):
        (root / "train" / f"dt={i}").mkdir(parents=True)
        part.to_parquet(root / "train" / f"dt={i}" / "part-0.parquet", index=False)
    (root / "validation").mkdir()
    validation.to_csv(root / "validation" / "windows.csv", index=False)
    return {"train": root / "train", "validation": root / "validation"}


def probe_rows() -> np.ndarray:
    """Two requests in the 84-value order: a tight pack and a spread one, every other day missing (NaN)."""
    names = feature_columns("signals6")
    rows = np.full((2, len(names)), np.nan, dtype=np.float32)
    for row, spread in enumerate((0.01, 0.09)):
        values = {"total_voltage_lag1": 350.0, "total_current_lag1": 20.0, "cell_min_voltage_lag1": 3.66,
                  "cell_max_voltage_lag1": 3.66 + spread, "max_temperature_lag1": 30.0, "min_temperature_lag1": 25.0}
        for name, value in values.items():
            rows[row, names.index(name)] = value
    return rows


@pytest.mark.filterwarnings("ignore:.*Unknown file format")
def test_local_run_writes_model_tar_gz_that_loads_and_predicts_on_numpy(channels, tmp_path, capsys) -> None:
    model_dir = tmp_path / "model"
    assert main(["--train", str(channels["train"]), "--validation", str(channels["validation"]),
                 "--model-dir", str(model_dir), "--feature-set", "signals6", *FAST]) == 0
    assert sorted(p.name for p in model_dir.iterdir()) == ["feature_names.json", "model.tar.gz"]
    with tarfile.open(model_dir / "model.tar.gz") as tar:
        assert tar.getnames() == ["xgboost-model", "feature_names.json"]
        tar.extractall(tmp_path / "unpacked", filter="data")
    booster = xgb.Booster()
    booster.load_model(tmp_path / "unpacked" / "xgboost-model")  # as the SageMaker container loads it
    assert booster.feature_names is None  # trained on arrays: CSV requests need no column names
    assert booster.num_features() == 84 and booster.num_boosted_rounds() == 20
    low, high = booster.predict(xgb.DMatrix(probe_rows(), missing=np.nan))
    assert low < 0.2 < 0.8 < high  # the spread on the day before as_of drives the label
    metadata = json.loads((model_dir / "feature_names.json").read_text())
    assert metadata["feature_names"] == feature_columns("signals6") and metadata["missing_as"] is None
    assert metadata["params"]["max_depth"] == 3 and metadata["params"]["objective"] == "binary:logistic"
    # 12 vehicles x 50 days before Feb 20, all labelled; the unlabelled tail is only in validation
    assert "trained on 600 windows" in capsys.readouterr().out


def test_trained_model_separates_held_out_windows(channels, tmp_path, windows) -> None:
    main(["--train", str(channels["train"]), "--model-dir", str(tmp_path), *FAST])
    booster, metadata = load_booster(tmp_path)
    held_out = labelled(windows[windows["as_of"].astype(str) >= "2026-03-06"])
    probability = predict(booster, feature_matrix(held_out, metadata["feature_names"]))
    assert roc_auc(held_out["label"], probability) > 0.95


def test_rows_without_label_are_dropped(windows) -> None:
    rows = labelled(windows)
    assert len(windows) == 12 * 80 and len(rows) == 12 * (80 - 13)
    with pytest.raises(ValueError, match=r"values \[2.0\]"):
        labelled(windows.assign(label=2))


def test_missing_days_are_nan_unless_the_reference_encoding_is_asked_for(windows) -> None:
    names = feature_columns("signals6")
    as_nan, as_minus_one = feature_matrix(windows, names), feature_matrix(windows, names, missing_as=-1)
    missing = windows[names].isna().to_numpy()
    assert missing.any() and np.isnan(as_nan[missing]).all() and not (as_nan == -1).any()
    assert (as_minus_one[missing] == -1).all() and not np.isnan(as_minus_one).any()
    with pytest.raises(ValueError, match="lack 1 feature column"):
        feature_matrix(windows.drop(columns=["total_voltage_lag3"]), names)


def test_sagemaker_environment_supplies_channels_model_dir_and_hyperparameters(channels, tmp_path,
                                                                             monkeypatch) -> None:
    model_dir = tmp_path / "opt-ml-model"
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(channels["train"]))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(channels["validation"]))
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("SM_TRAINING_ENV", "{}")  # inside a job SageMaker packs the model folder itself
    monkeypatch.setenv("SM_NUM_CPUS", "1")
    # exactly what script mode passes: hyperparameters only, one unknown to this script
    assert main(["--max_depth", "2", "--eta", "0.5", "--num_round", "7", "--colsample_bylevel", "0.5",
                 "--verbose", "False"]) == 0
    assert sorted(p.name for p in model_dir.iterdir()) == ["feature_names.json", "xgboost-model"]
    booster, metadata = load_booster(model_dir)
    assert booster.num_boosted_rounds() == 7
    assert {k: metadata["params"][k] for k in ("max_depth", "eta", "nthread", "colsample_bylevel")} == {
        "max_depth": 2, "eta": 0.5, "nthread": 1, "colsample_bylevel": 0.5}
    assert predict(booster, probe_rows()).shape == (2,)


def test_reference_encoding_and_full_feature_set_checks(channels, tmp_path) -> None:
    main(["--train", str(channels["train"]), "--model-dir", str(tmp_path), "--missing-as", "-1", *FAST])
    assert json.loads((tmp_path / "feature_names.json").read_text())["missing_as"] == -1.0
    with pytest.raises(ValueError, match="lack 280 feature column"):  # 14 days x the 20 signals beyond the six
        main(["--train", str(channels["train"]), "--model-dir", str(tmp_path), "--feature-set", "full", *FAST])


def test_same_inputs_give_the_same_archive(channels, tmp_path) -> None:
    for name in ("first", "second"):
        main(["--train", str(channels["train"]), "--model-dir", str(tmp_path / name), *FAST])
    assert (tmp_path / "first" / "model.tar.gz").read_bytes() == (tmp_path / "second" / "model.tar.gz").read_bytes()


def test_early_stopping_keeps_the_best_rounds(channels, tmp_path) -> None:
    main(["--train", str(channels["train"]), "--validation", str(channels["validation"]),
          "--model-dir", str(tmp_path), "--num_round", "300", "--early_stopping_rounds", "5", "--nthread", "1",
          "--eta", "0.5", "--verbose", "false"])
    booster, metadata = load_booster(tmp_path)
    assert booster.num_boosted_rounds() == metadata["rounds_kept"] < 300


def test_missing_channel_is_an_actionable_error(tmp_path) -> None:
    with pytest.raises(SystemExit):
        main(["--model-dir", str(tmp_path)])  # neither --train nor SM_CHANNEL_TRAIN
    with pytest.raises(FileNotFoundError, match="no .parquet, .csv or .csv.gz files"):
        main(["--train", str(tmp_path), "--model-dir", str(tmp_path / "m"), *FAST])


def test_read_windows_reads_csv_and_parquet_alike(channels) -> None:
    validation = read_windows(channels["validation"])
    assert len(validation) == 12 * 16 and validation["label"].isna().sum() == 12 * 13
    train = read_windows(channels["train"])  # two Parquet partitions
    assert len(train) == 12 * 50 and train["as_of"].astype(str).max() == "2026-02-19"
