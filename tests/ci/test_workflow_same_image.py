"""The push job publishes only the image that was tested: same image ID, or a clear refusal."""

from __future__ import annotations

import json

from ci.workflow_same_image import differences, main

TESTED = {"variant": "cpu", "ref": "r:1-cpu", "id": "sha256:aaa", "model_tag": "m:1", "bento_digest": "b1"}


def test_same_id_is_the_same_image():
    """Equal image IDs: nothing differs."""
    assert differences(TESTED, dict(TESTED)) == []


def test_a_different_model_is_named():
    """When the IDs differ, the fields that explain it are listed (here the model)."""
    built = {**TESTED, "id": "sha256:bbb", "model_tag": "m:2"}
    lines = differences(TESTED, built)
    assert lines[0] == "image ID: tested sha256:aaa, rebuilt sha256:bbb"
    assert "model_tag: tested m:1, rebuilt m:2" in lines


def test_records_without_an_id_never_match():
    """Two records that both lack an ID are not proof of anything."""
    assert differences({}, {})


def test_main_exit_codes(tmp_path, capsys):
    """0 for the same image, 1 with a reason for another, 2 when a record is missing."""
    tested, built = tmp_path / "tested.json", tmp_path / "built.json"
    tested.write_text(json.dumps(TESTED))
    built.write_text(json.dumps(TESTED))
    assert main([str(tested), str(built)]) == 0
    built.write_text(json.dumps({**TESTED, "id": "sha256:ccc"}))
    assert main([str(tested), str(built)]) == 1
    assert "not the tested one" in capsys.readouterr().err
    assert main([str(tested), str(tmp_path / "missing.json")]) == 2
