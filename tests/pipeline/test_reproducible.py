"""Byte-reproducible model files: the zip re-packer and Keras config normalization."""

from __future__ import annotations

import io
import json
import zipfile

from pipeline.reproducible import (
    FIXED_DATE_SAVED,
    ZIP_DATE_TIME,
    joblib_bytes,
    renumber_shared_objects,
    repack_keras_archive,
)


def make_zip(entries: dict[str, bytes], date_time: tuple[int, ...], mode: int) -> bytes:
    """A zip of `entries` in the given order, every entry stamped with `date_time` and `mode`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.external_attr = mode << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def keras_like_entries(date_saved: str, shared_id: int) -> dict[str, bytes]:
    """Entries shaped like a `.keras` file, with the run-dependent values given."""
    policy = {"class_name": "DTypePolicy", "shared_object_id": shared_id}
    config = {"layers": [{"dtype": policy}, {"dtype": dict(policy)}]}
    return {
        "metadata.json": json.dumps({"keras_version": "3", "date_saved": date_saved}).encode(),
        "config.json": json.dumps(config).encode(),
        "model.weights.h5": b"\x89HDF weights",
    }


def test_repack_gives_identical_bytes_for_identical_content():
    """Two saves differing only in timestamps, entry order, permissions and object ids re-pack equal."""
    first = make_zip(keras_like_entries("2026-01-01@10:00:00", 140001), (2026, 1, 1, 10, 0, 0), 0o600)
    entries = keras_like_entries("2026-03-04@11:12:13", 139999)
    second = make_zip(dict(reversed(entries.items())), (2026, 3, 4, 11, 12, 14), 0o666)
    assert first != second
    assert repack_keras_archive(first) == repack_keras_archive(second)


def test_repack_strips_timestamps_and_fixes_permissions():
    """Every entry gets the 1980 date and rw-r--r--; date_saved becomes the fixed value."""
    repacked = repack_keras_archive(
        make_zip(keras_like_entries("2026-05-06@07:08:09", 1), (2026, 5, 6, 7, 8, 8), 0o600)
    )
    with zipfile.ZipFile(io.BytesIO(repacked)) as archive:
        infos = archive.infolist()
        assert [info.filename for info in infos] == sorted(info.filename for info in infos)
        for info in infos:
            assert info.date_time == ZIP_DATE_TIME
            assert info.external_attr >> 16 == 0o100644
            assert info.compress_type == zipfile.ZIP_STORED
        metadata = json.loads(archive.read("metadata.json"))
        assert metadata["date_saved"] == FIXED_DATE_SAVED
        assert archive.read("model.weights.h5") == b"\x89HDF weights"


def test_repack_is_idempotent():
    """Re-packing a re-packed archive changes nothing."""
    once = repack_keras_archive(make_zip(keras_like_entries("x", 5), (2026, 1, 1, 0, 0, 0), 0o644))
    assert repack_keras_archive(once) == once


def test_shared_object_ids_are_renumbered_consistently():
    """Equal ids map to the same small number, different ids to different ones, in order."""
    config = {"a": {"shared_object_id": 9001}, "b": [{"shared_object_id": 42}, {"shared_object_id": 9001}]}
    assert renumber_shared_objects(config) == {
        "a": {"shared_object_id": 1},
        "b": [{"shared_object_id": 2}, {"shared_object_id": 1}],
    }


def test_joblib_bytes_are_deterministic():
    """Pickling equal objects twice gives equal bytes."""
    obj = {"weights": [1.5, 2.5], "name": "baseline"}
    assert joblib_bytes(obj) == joblib_bytes(dict(obj))
