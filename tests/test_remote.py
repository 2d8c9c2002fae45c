"""The DVC remote: push to S3 (moto on 127.0.0.1), then a fresh clone pulls instead of retraining.

This is what CI does with a configured remote (`make ci-repro` with DVC_REMOTE_URL set, then
`make push-data` on main): the test drives those Makefile targets, not a copy of their commands.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, clone_of, free_port, make, run, stages_run, tool_env

BUCKET = "conveyor-dvc"
START_TIMEOUT_S = 30


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """moto's S3 server on a free local port, with a bucket; yields its endpoint URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen([BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"moto_server did not start on {endpoint}: {(tmp_path / 'moto.log').read_text()}")
                time.sleep(0.2)
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            # botocore (and so DVC's s3fs) sends every S3 call here instead of AWS.
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            monkeypatch.setenv(key, value)
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=5).close()
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.mark.slow
def test_fresh_clone_pulls_instead_of_retraining(reproduced_repo: Path, tmp_path: Path, s3: str) -> None:
    remote = f"DVC_REMOTE_URL=s3://{BUCKET}/dvc"
    source = clone_of(reproduced_repo, tmp_path / "source")
    assert "nothing pushed" in make(source, "push-data").stdout, "no remote yet: push-data says so"
    make(source, "ci-repro", remote)  # adds the remote to .dvc/config.local; nothing to rerun
    pushed = make(source, "push-data").stdout
    assert re.search(r"\d+ files? pushed", pushed), pushed
    assert not (source / ".dvc" / "config").read_text().count("s3://"), "the remote stays out of the committed config"

    fresh = tmp_path / "fresh"
    run(tmp_path, "git", "clone", "--quiet", str(source), fresh)
    assert not (fresh / "models" / "model.skops").exists()
    result = make(fresh, "ci-repro", remote)
    output = result.stdout + result.stderr

    ran = stages_run(output)
    # ci-repro re-checks the gate against the current champion (here a new commit, so the verdict
    # file changes and package follows); every other stage, training above all, comes from the remote.
    assert ran in (["gate"], ["gate", "package"]), output
    assert (fresh / "models" / "model.skops").read_bytes() == (source / "models" / "model.skops").read_bytes()
    status = subprocess.run(
        [BIN / "dvc", "status", "--json"], cwd=fresh, env=tool_env(), capture_output=True, text=True, check=True
    )
    # The source stage runs on every repro (it fingerprints data.source): always "changed".
    assert json.loads(status.stdout or "{}") in ({}, {"source": ["always changed"]}), status.stdout
