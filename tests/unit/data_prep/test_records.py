"""Problem and StepLabels records reject bad values with messages that say what is wrong."""

import pytest

from data_prep.prm_metadata import METADATA_FILENAME, PRMMetadata
from data_prep.records import Problem, StepLabels


def test_problem_validation():
    assert Problem("a", "q", "1", 3, "x").to_dict() == {"id": "a", "problem": "q", "answer": "1", "level": 3, "source": "x"}
    with pytest.raises(ValueError, match="problem text is empty"):
        Problem("a", " ", "1")
    with pytest.raises(ValueError, match="gold answer is empty"):
        Problem("a", "q", "")
    with pytest.raises(ValueError, match="level"):
        Problem("a", "q", "1", level=0)


def test_step_labels_accept_hard_and_soft_labels():
    assert StepLabels("p", ["a", "b"], [True, 0.7]).labels == [True, 0.7]


@pytest.mark.parametrize(
    ("completions", "labels", "message"),
    [
        (["a", "b"], [True], "1 labels for 2 steps"),
        (["a", ""], [True, False], "step 1 is empty"),
        (["a"], ["yes"], "label 0 must be a bool"),
        (["a"], [1.5], "label 0 must be in"),
        (["a"], [None], "label 0 must be a bool"),
        ([], [], "non-empty list"),
    ],
)
def test_step_labels_reject_bad_rows(completions, labels, message):
    with pytest.raises(ValueError, match=message):
        StepLabels("p", completions, labels)


def test_prm_metadata_round_trip_and_errors(tmp_path):
    metadata = PRMMetadata(prm_style="token_classification", base_model="base")
    metadata.save(tmp_path)
    assert PRMMetadata.load(tmp_path) == metadata
    assert PRMMetadata.load(tmp_path).step_separator == "\n\n"
    with pytest.raises(FileNotFoundError, match="not a PRM written by"):
        PRMMetadata.load(tmp_path / "missing")
    (tmp_path / METADATA_FILENAME).write_text('{"prm_style": "token_classification", "colour": 1}')
    with pytest.raises(ValueError, match="unknown keys"):
        PRMMetadata.load(tmp_path)
    with pytest.raises(ValueError, match="prm_style"):
        PRMMetadata(prm_style="regression")  # type: ignore[arg-type]
