"""params.yaml loading: stages fail with one sentence that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import prepare
from pipeline.params import ParamsError, load_params, section


def test_missing_key_is_named_in_the_error():
    """A section without a required key raises ParamsError naming `section.key`."""
    params = {"train": {"seed": 1}}
    with pytest.raises(ParamsError, match=r"lacks `train\.epochs`: add it"):
        section(params, "train", ("seed", "epochs"))


def test_missing_section_is_named_in_the_error():
    """A missing section raises ParamsError naming the section."""
    with pytest.raises(ParamsError, match="no `baseline` section"):
        section({"train": {}}, "baseline", ("C",))


def test_missing_file_is_named_in_the_error(tmp_path: Path):
    """A params file that does not exist raises ParamsError naming the path."""
    path = tmp_path / "params.yaml"
    with pytest.raises(ParamsError, match=r"params\.yaml not found"):
        load_params(path)


def test_non_mapping_file_is_rejected(tmp_path: Path):
    """A params file that is not a mapping of sections raises ParamsError."""
    path = tmp_path / "params.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="must be a mapping"):
        load_params(path)


def test_stage_main_exits_with_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A stage's main() turns a missing key into SystemExit with the message, not a traceback."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"dataset": "breast_cancer"}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as excinfo:
        prepare.main()
    assert str(excinfo.value) == ("error: params.yaml lacks `data.test_size`, `data.seed`: add them (see README).")
