"""search() on a real PostgreSQL server: two worker processes share one study, and another
machine's folder can rebuild the report from the shared study alone."""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest

from edgeslim.pipeline import rerank, search

from .test_pipeline_search import FAST

PASSWORD = "s3cret-pw"


def _server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 with one database; yields its SQLAlchemy URL."""
    bindir = _server_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb): "
                    "apt-get install postgresql")
    # the server refuses to run as root: run it as the 'postgres' system user the package creates
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="edgeslim-pg-"))  # not under pytest's root-only tmp_path
    if as_user:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    (base / "pw").write_text(PASSWORD)
    if as_user:
        shutil.chown(base / "pw", "postgres", "postgres")

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(base / "pw"), "-E", "UTF8",
        "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
        "-o", f"-h 127.0.0.1 -p {port} -k {base} -F", "start")
    try:
        run(str(bindir / "createdb"), "-h", str(base), "-p", str(port), "-U", "postgres", "edgeslim_search")
        yield f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1:{port}/edgeslim_search"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_one_postgres_study(tmp_path, digits_checkpoint, postgres_url):
    ckpt, _ = digits_checkpoint
    r = search(ckpt, {**FAST, "max_accuracy_drop": 3.0, "trials": 2}, out=tmp_path / "machine-a", workers=2,
               storage=postgres_url, study_name="pg-study", progress=False).summary
    study = optuna.load_study(study_name="pg-study", storage=postgres_url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    assert {t.user_attrs["worker"] for t in done} == {0, 1}
    assert len({t.user_attrs["pid"] for t in done}) == 2  # two processes wrote to one server
    assert r["complete"] == 2 and r["workers"] == [0, 1]
    assert PASSWORD not in (tmp_path / "machine-a" / "pareto.json").read_text()  # redacted

    # another machine holds no trial folder and no study.db: its report comes from the server alone
    r_b = rerank(tmp_path / "machine-b", storage=postgres_url, study_name="pg-study")
    summary = json.loads((tmp_path / "machine-b" / "pareto.json").read_text())
    assert not (tmp_path / "machine-b" / "trials").exists()
    assert summary["complete"] == 2 and summary["workers"] == [0, 1] and summary["max_accuracy_drop"] == 3.0
    assert [p["trial"] for p in r_b["pareto"]] == [p["trial"] for p in r["pareto"]]
