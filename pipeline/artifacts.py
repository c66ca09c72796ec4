"""Where each pipeline artifact lives and how it is written.

Paths are relative to the repository root (where `dvc repro` runs the stages); `dvc.yaml` names the
same paths as stage outputs. Stage functions take a `root` so the tests can run them in a temporary
directory.

Every writer creates the parent directory and replaces the file in one `os.replace`, so a crashed
stage never leaves a half-written artifact behind for DVC to cache. Every writer is deterministic
(sorted JSON keys, fixed float formatting, no timestamps): the same inputs give the same bytes,
which is what lets `dvc repro --force` reproduce `dvc.lock` exactly.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where a split is read: ci/ takes the paths here without it
    import numpy as np

# prepare
PREPARED_DIR = Path("data/prepared")
TRAIN_CSV = PREPARED_DIR / "train.csv"
TEST_CSV = PREPARED_DIR / "test.csv"
SCHEMA_JSON = PREPARED_DIR / "schema.json"
# train
CLASSIFIER_DIR = Path("models/classifier")
MODEL_FILE = CLASSIFIER_DIR / "model.keras"
BASELINE_FILE = CLASSIFIER_DIR / "baseline.joblib"
ONNX_FILE = Path("models/model.onnx")  # the classifier exported to ONNX (stage `export`), the served artifact
# The ONNX graph's tensors, which the manifest records for the service (and its Open Inference Protocol).
ONNX_INPUT = "features"  # float32 [batch, n_features]: raw features, as the Keras model takes them
ONNX_OUTPUT = "probabilities"  # float32 [batch, n_classes]
HISTORY_CSV = Path("reports/training_history.csv")
# evaluate
METRICS_JSON = Path("reports/metrics.json")
PLOTS_DIR = Path("reports/plots")
CONFUSION_CSV = PLOTS_DIR / "confusion.csv"
ROC_CSV = PLOTS_DIR / "roc.csv"
PR_CSV = PLOTS_DIR / "pr.csv"
GOLDEN_JSON = Path("reports/golden.json")
# package
MANIFEST_JSON = Path("models/manifest.json")
MODEL_CARD_MD = Path("reports/model_card.md")

TARGET_COLUMN = "target"
# metrics.json: these metrics for each model. Precision, recall, F1 and the ROC and PR curves treat
# malignant as the positive class: a missed malignant tumour is the costly error.
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
POSITIVE_CLASS = "malignant"
# Six decimals is far below any difference that matters in a metric or a plot, and far above the
# float noise that would otherwise make reports differ in their last digit between platforms.
DECIMALS = 6


def rounded(value: float, decimals: int = DECIMALS) -> float:
    """Round a metric for reports, as a plain float (JSON cannot hold numpy scalars)."""
    return round(float(value), decimals)


def write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically, creating parent directories; return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fixed temporary name next to the target (not tempfile's 0600 file): same filesystem for
    # os.replace, and the artifact keeps the usual umask permissions.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 `text` with Unix newlines to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Serialize `obj` deterministically: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: Path, obj: Any) -> Path:
    """Write `obj` as deterministic JSON to `path` atomically."""
    return write_text(path, dumps_json(obj))


def read_json(path: Path) -> Any:
    """Read a JSON artifact."""
    return json.loads(path.read_text(encoding="utf-8"))


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV with `header` and `rows` atomically (`\\n` line ends on every platform)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def write_split(path: Path, features: np.ndarray, target: np.ndarray, names: list[str]) -> Path:
    """Write one data split: a column per feature, then `target` (the class index).

    Floats are written with `repr`, which round-trips exactly, so training on the CSV sees the
    very same numbers as training on the in-memory data set.
    """
    rows = ([*map(repr, map(float, row)), int(label)] for row, label in zip(features, target, strict=True))
    return write_csv(path, [*names, TARGET_COLUMN], rows)


def read_split(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a split written by `write_split`: (features float64, target int64, feature names)."""
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    if not header or header[-1] != TARGET_COLUMN:
        raise ValueError(f"{path}: the last column must be `{TARGET_COLUMN}`; re-run `dvc repro`.")
    import numpy as np

    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))
    return table[:, :-1], table[:, -1].astype(np.int64), header[:-1]
