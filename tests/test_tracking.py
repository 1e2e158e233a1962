"""Tracker against real offline W&B runs; nothing reaches a server."""

import json

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hybridnas.engine.tracking import (  # noqa: E402
    METRICS_FILE,
    RUN_ID_FILE,
    Tracker,
    read_wandb_history,
    read_wandb_records,
    resolve_mode,
)


@pytest.fixture
def no_login(monkeypatch, tmp_path):
    """No API key, no WANDB_MODE, an empty HOME/netrc: a machine where nobody logged in."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    return home


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """One offline run shared by the module (W&B start-up costs about a second)."""
    run_dir = tmp_path_factory.mktemp("offline_run")
    png = run_dir / "cell.png"
    plt.figure(figsize=(1, 1))
    plt.plot([0, 1])
    plt.savefig(png)
    plt.close()

    tracker = Tracker.create(mode="offline", project="test", run_dir=run_dir, config={"lr": 0.1})
    tracker.log({"loss": 1.5}, step=0)
    tracker.log({"loss": 0.5, "acc": 0.75}, step=1)
    tracker.log_image("cell", png, step=1)
    tracker.log_table("population", ["arch", "acc"], [["a", 0.25], ["b", 0.5]], step=2)
    genotype = tracker.log_json("genotype", {"normal": [["conv3x3", 0], ["skip", 1]]})
    tracker.summary({"best_acc": 0.75})
    run_id = tracker.run_id
    tracker.finish()
    return run_dir, run_id, genotype


def test_offline_history_has_scalars_image_table(offline_run):
    run_dir, _, _ = offline_run
    history = read_wandb_history(run_dir)
    by_step = {row["_step"]: row for row in history}
    assert by_step[0]["loss"] == 1.5
    assert by_step[1]["loss"] == 0.5 and by_step[1]["acc"] == 0.75
    assert by_step[1]["cell._type"] == "image-file"
    assert by_step[2]["population._type"] == "table-file"
    assert by_step[2]["population.nrows"] == 2
    table_file = next(
        (run_dir / "wandb").glob("offline-run-*/files/" + by_step[2]["population.path"])
    )
    assert json.loads(table_file.read_text())["data"] == [["a", 0.25], ["b", 0.5]]


def test_offline_json_artifact_and_summary(offline_run):
    run_dir, run_id, genotype = offline_run
    assert json.loads(genotype.read_text()) == {"normal": [["conv3x3", 0], ["skip", 1]]}
    records = read_wandb_records(run_dir)
    artifacts = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert any(a["name"] == f"{run_id}-genotype" and a["type"] == "json" for a in artifacts)
    summaries = [r["summary"]["update"] for r in records if r["type"] == "summary"]
    assert any(s.get("best_acc") == 0.75 for s in summaries)


def test_metrics_jsonl_and_run_id(offline_run):
    run_dir, run_id, _ = offline_run
    lines = [json.loads(x) for x in (run_dir / METRICS_FILE).read_text().splitlines()]
    assert lines[0] == {"_step": 0, "loss": 1.5}
    assert [x.get("_kind") for x in lines] == [None, None, "image", "table", "json", "summary"]
    assert (run_dir / RUN_ID_FILE).read_text().strip() == run_id


def test_resume_continues_the_stored_run(offline_run):
    run_dir, run_id, _ = offline_run
    tracker = Tracker.create(mode="offline", project="test", run_dir=run_dir, config={})
    assert tracker.run_id == run_id
    tracker.log({"loss": 0.25}, step=3)
    tracker.finish()
    assert read_wandb_history(run_dir)[-1]["loss"] == 0.25  # the newest run file


def test_none_mode_writes_only_jsonl(tmp_path):
    tracker = Tracker.create(mode="none", project="test", run_dir=tmp_path, config={})
    tracker.log({"loss": 1.0}, step=0)
    tracker.log_table("t", ["a"], [[1]], step=0)
    tracker.log_json("genotype", {"x": 1})
    tracker.finish()
    assert tracker.run_id is None
    assert not (tmp_path / "wandb").exists()
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert json.loads(lines[0]) == {"_step": 0, "loss": 1.0} and len(lines) == 3


def test_other_ranks_do_nothing(tmp_path):
    tracker = Tracker.create(
        mode="offline", project="test", run_dir=tmp_path / "r1", config={}, rank=1
    )
    tracker.log({"loss": 1.0}, step=0)
    assert tracker.log_json("g", {}) is None
    tracker.finish()
    assert not (tmp_path / "r1").exists()


def test_auto_without_login_goes_offline(no_login, tmp_path, capsys):
    tracker = Tracker.create(mode="auto", project="test", run_dir=tmp_path / "run", config={})
    tracker.log({"loss": 1.0}, step=0)
    tracker.finish()
    notice = [line for line in capsys.readouterr().out.splitlines() if "hybridnas" in line]
    assert len(notice) == 1 and "offline" in notice[0]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))


def test_auto_with_netrc_key_is_online(no_login):
    # Only the decision is checked: starting an online run would need the network.
    (no_login / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {'a' * 40}\n")
    (no_login / ".netrc").chmod(0o600)
    assert resolve_mode("auto") == "online"


def test_auto_follows_wandb_mode(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "none"
    with pytest.raises(ValueError, match="tracking mode"):
        resolve_mode("dry")
