"""Byte-reproducible training and model files: the same inputs give the same artifact hashes.

This is what keeps `dvc repro --force` from changing `dvc.lock`, and what lets the model's content
hash serve as its version. Three things vary from run to run without help:

- Training numerics: `configure_determinism` fixes the seeds, TensorFlow op determinism, the
  choice of CPU kernels and the thread counts.
- The `.keras` zip that `model.save` writes: its entries carry the save time, metadata.json holds
  `date_saved`, and config.json holds `shared_object_id`s, which are Python `id()`s (memory
  addresses) of objects shared between layers, such as the dtype policy. `repack_keras_archive`
  removes all three. The weights file inside (HDF5 via h5py) needs no fixing: h5py creates
  datasets without timestamps (`track_times=False`) and Keras writes the variables in a fixed order.
- Nothing else: pickles of equal scikit-learn objects are equal, so `joblib_bytes` only fixes the
  format (uncompressed).

Across CPU types, `pipeline.numerics` pins the kernels that numpy, OpenBLAS and TensorFlow choose
at run time, so x86-64 machines with AVX2, with or without AVX-512, train the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib

if TYPE_CHECKING:
    import keras

# Entries of a re-packed zip: the earliest date a zip can hold, and rw-r--r-- regular files.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644
ZIP_DIR_MODE = 0o040755
ZIP_UNIX = 3  # "made by" Unix on every platform, so permissions read the same everywhere
KERAS_METADATA = "metadata.json"
KERAS_CONFIG = "config.json"
FIXED_DATE_SAVED = "1980-01-01@00:00:00"


def configure_determinism(seed: int) -> None:
    """Make Keras training and inference reproducible to the byte on one CPU type.

    The environment variables only take effect if TensorFlow is not imported yet, which is why the
    pipeline imports TensorFlow inside functions.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # oneDNN chooses its kernels at run time by CPU features; with it on, the trained weights
    # differ from those of the plain Eigen kernels (measured), so the result would depend on it.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # Eigen can split reductions by thread count; one thread keeps the summation order the same on
    # a 2-core CI runner and a 16-core workstation. The model is small, so this costs little.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    # TensorFlow's C++ log lines are noise here (CPU features, and an "E" line "NodeDef mentions
    # attribute use_unbounded_threadpool" that Keras' input pipeline triggers); real failures
    # still raise Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # the runtime already started in this process (tests): the env variables decided
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow seeds at once
    tf.config.experimental.enable_op_determinism()


def renumber_shared_objects(config: Any, ids: dict[int, int] | None = None) -> Any:
    """Replace every `shared_object_id` in a Keras config by 1, 2, ... in order of appearance.

    Keras only compares these ids with each other when loading, so a consistent renumbering keeps
    the sharing and drops the memory addresses. Returns a new structure; `ids` is the mapping so far.
    """
    ids = {} if ids is None else ids
    if isinstance(config, list):
        return [renumber_shared_objects(item, ids) for item in config]
    if not isinstance(config, dict):
        return config
    renumbered = {}
    for key, value in config.items():
        if key == "shared_object_id":
            renumbered[key] = ids.setdefault(value, len(ids) + 1)
        else:
            renumbered[key] = renumber_shared_objects(value, ids)
    return renumbered


def _normalized_entry(name: str, content: bytes) -> bytes:
    """The content of zip entry `name` with Keras' run-dependent values replaced."""
    if name == KERAS_METADATA:
        metadata = json.loads(content)
        metadata["date_saved"] = FIXED_DATE_SAVED
        return json.dumps(metadata).encode()
    if name == KERAS_CONFIG:
        return json.dumps(renumber_shared_objects(json.loads(content))).encode()
    return content


def repack_keras_archive(data: bytes) -> bytes:
    """Return the `.keras` zip `data` re-packed so that equal content gives equal bytes.

    Entries are sorted by name and stored uncompressed (compressed bytes depend on the zlib build)
    with a fixed date and fixed permissions. In metadata.json `date_saved` becomes
    FIXED_DATE_SAVED; in config.json shared object ids are renumbered. Other entries, and any other
    zip, keep their content.
    """
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target,
    ):
        for name in sorted(source.namelist()):
            content = _normalized_entry(name, source.read(name))
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.create_system = ZIP_UNIX
            info.external_attr = (ZIP_DIR_MODE if name.endswith("/") else ZIP_FILE_MODE) << 16
            info.compress_type = zipfile.ZIP_STORED
            target.writestr(info, content)
    return out.getvalue()


def keras_model_bytes(model: keras.Model) -> bytes:
    """Save `model` in the `.keras` format and return the re-packed, deterministic bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"  # Keras insists on the suffix
        model.save(path)
        return repack_keras_archive(path.read_bytes())


def joblib_bytes(obj: Any) -> bytes:
    """Pickle `obj` with joblib, uncompressed, so the bytes do not depend on the zlib build."""
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()
