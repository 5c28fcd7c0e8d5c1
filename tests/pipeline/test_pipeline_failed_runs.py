"""A compress or search that fails before writing anything useful leaves no output folder
(but never removes one that was already there); QAT shows a line per epoch."""
from typer.testing import CliRunner

from edgeslim.cli import app

runner = CliRunner()


def test_failed_compress_and_search_leave_no_new_folder(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    for args in (["compress", str(missing), "--recipe", "balanced"], ["search", str(missing), "--trials", "1"]):
        out = tmp_path / "runs" / args[0]
        r = runner.invoke(app, [*args, "--out", str(out)])
        assert r.exit_code != 0 and "not a checkpoint folder" in str(r.exception), r.output
        assert not (tmp_path / "runs").exists(), args  # was: an empty runs/compress (or a study.db alone)

        mine = tmp_path / "mine"
        mine.mkdir(exist_ok=True)
        r = runner.invoke(app, [*args, "--out", str(mine)])
        assert r.exit_code != 0 and mine.is_dir()  # the user's folder stays


def test_qat_prints_a_line_per_epoch(tmp_path, digits_checkpoint):
    folder, _ = digits_checkpoint
    r = runner.invoke(app, ["quantize", str(folder), "--method", "qat", "--epochs", "2", "--samples", "64",
                            "--out", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    assert "QAT epoch 1/2: loss" in r.output and "QAT epoch 2/2: loss" in r.output
