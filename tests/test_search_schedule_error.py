"""Issue 13 item 6: a search whose SDAS schedule cannot run (search.warmup_epochs not below
search.epochs) stops with one line naming both keys, before the run is written."""

from __future__ import annotations

import subprocess

import test_search as ts


def test_warmup_not_below_epochs_is_a_one_line_error(tmp_path):
    out = tmp_path / "run"
    cmd = ts._search_cmd(out, "tracking=none", "search.epochs=2", "search.warmup_epochs=2")
    proc = subprocess.run(cmd, env=ts._env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "search.warmup_epochs=2 must be in [0, search.epochs=2)" in proc.stderr
    # refused before the run was written (Hydra may have made the empty folder for its log)
    assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()
