"""edgeslim._io.output_folder: a failed run leaves no folder it created, and never removes one
the user had."""
import pytest

from edgeslim._io import output_folder, removes_new_output_on_failure


def test_a_failed_run_removes_only_what_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with output_folder(tmp_path / "a" / "b", useful=lambda p: False) as out:
            (out / "half.json").write_text("{}")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # "a" too: this call made it

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(RuntimeError):
        with output_folder(mine, useful=lambda p: False):
            raise RuntimeError("boom")
    assert (mine / "notes.txt").read_text() == "keep"


def test_a_useful_partial_result_is_kept(tmp_path):
    @removes_new_output_on_failure(lambda p: (p / "model.onnx").exists(), arg="folder")
    def run(x, folder, write_model=False):
        if write_model:
            (folder / "model.onnx").write_bytes(b"m")
        raise KeyboardInterrupt  # Ctrl-C counts as a failure too

    with pytest.raises(KeyboardInterrupt):
        run(1, tmp_path / "empty")
    with pytest.raises(KeyboardInterrupt):
        run(1, folder=tmp_path / "kept", write_model=True)
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
    assert run.__name__ == "run"
