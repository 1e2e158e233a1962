"""Experiment tracking: W&B (online, offline or off) plus a plain ``metrics.jsonl`` record.

Only rank 0 tracks; on other ranks every method is a no-op. Whatever the W&B mode, every
logged dict is appended to ``<run_dir>/metrics.jsonl`` so a run can be read without W&B.
The W&B run id is stored in ``<run_dir>/wandb_run_id.txt``; a tracker created again on the
same folder continues the same W&B run (``resume="allow"``). wandb is imported only when a
tracker opens a W&B run (or asks whether the user is logged in), never by importing this.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["MODES", "Tracker", "read_wandb_history", "read_wandb_records", "resolve_mode"]

MODES = ("auto", "online", "offline", "none")
RUN_ID_FILE = "wandb_run_id.txt"
METRICS_FILE = "metrics.jsonl"


def _logged_in() -> bool:
    """Whether W&B credentials exist (env key, netrc or settings) for the configured host.

    Uses wandb's own lookup without prompting or contacting the server.
    """
    import wandb
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth

    host = wandb_setup.singleton().settings.base_url
    try:
        auth = wbauth.authenticate_session(
            host=host, source="hybridnas", prompt=False, update_session=False
        )
    except wandb.errors.AuthenticationError:
        return False  # a malformed key cannot go online either
    return auth is not None


def resolve_mode(mode: str) -> str:
    """Turn ``mode`` into "online", "offline" or "none".

    "auto" follows ``WANDB_MODE`` when it is set, else goes online when the user is logged
    in and offline (with a one-line notice) when not.
    """
    if mode not in MODES:
        raise ValueError(f"tracking mode {mode!r}: expected one of {MODES}")
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode:
        return {"disabled": "none", "dryrun": "offline", "run": "online"}.get(env_mode, env_mode)
    if _logged_in():
        return "online"
    print("hybridnas: no W&B login found, tracking offline (sync later with `wandb sync`).")
    return "offline"


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for tensors, numpy values and paths."""
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


class Tracker:
    """Logs metrics, media and artefacts of one run; build it with :meth:`Tracker.create`."""

    def __init__(self, run_dir: Path, run: Any | None, enabled: bool) -> None:
        self.run_dir = run_dir
        self.run = run  # the wandb Run, None in "none" mode and off rank 0
        self.enabled = enabled

    @classmethod
    def create(
        cls,
        *,
        mode: str = "auto",
        project: str,
        run_dir: Path,
        config: dict,
        name: str | None = None,
        rank: int = 0,
        resume_id: str | None = None,
    ) -> Tracker:
        """Start tracking into ``run_dir`` (rank 0 only; other ranks get a no-op tracker).

        ``resume_id`` (or the id stored in ``run_dir`` by an earlier start) continues that
        W&B run; otherwise a new id is drawn and stored.
        """
        run_dir = Path(run_dir)
        if rank != 0:
            return cls(run_dir, None, enabled=False)
        run_dir.mkdir(parents=True, exist_ok=True)
        mode = resolve_mode(mode)
        if mode == "none":
            return cls(run_dir, None, enabled=True)
        import wandb
        from wandb.sdk.lib import runid

        id_file = run_dir / RUN_ID_FILE
        if resume_id is None and id_file.is_file():
            resume_id = id_file.read_text().strip() or None
        run_id = resume_id or runid.generate_id()
        id_file.write_text(run_id + "\n")

        settings = wandb.Settings(init_timeout=120, silent=True)
        if mode == "offline":
            # Nothing to upload offline: skip the stats sampler, machine probing and console
            # capture so start and finish take well under a second.
            settings = wandb.Settings(
                init_timeout=60,
                silent=True,
                console="off",
                x_disable_stats=True,
                x_disable_machine_info=True,
                x_save_requirements=False,
            )
        run = wandb.init(
            project=project,
            name=name,
            config=config,
            dir=str(run_dir),
            mode=mode,
            id=run_id,
            resume="allow",
            settings=settings,
        )
        return cls(run_dir, run, enabled=True)

    @property
    def run_id(self) -> str | None:
        """The W&B run id (pass it as ``resume_id`` to continue the run), None without W&B."""
        return self.run.id if self.run is not None else None

    def _record(self, entry: dict) -> None:
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(entry, default=_jsonable) + "\n")

    def log(self, metrics: dict, step: int) -> None:
        """Log scalar (or wandb-loggable) values at ``step``."""
        if not self.enabled:
            return
        self._record({"_step": step, **metrics})
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_image(self, key: str, png_path: str | Path, step: int) -> None:
        """Log an image file (e.g. a plotted cell) under ``key``."""
        if not self.enabled:
            return
        self._record({"_step": step, "_kind": "image", key: str(png_path)})
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(png_path))}, step=step)

    def log_table(
        self, key: str, columns: Sequence[str], rows: Sequence[Sequence], step: int
    ) -> None:
        """Log a table (e.g. the population of one generation) under ``key``."""
        if not self.enabled:
            return
        rows = [list(r) for r in rows]
        self._record(
            {"_step": step, "_kind": "table", key: {"columns": list(columns), "rows": rows}}
        )
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(columns=list(columns), data=rows)}, step=step)

    def log_json(self, key: str, obj: Any) -> Path | None:
        """Save ``obj`` (e.g. a genotype) as ``<run_dir>/<key>.json`` and as a W&B artifact.

        Returns the file path (None off rank 0).
        """
        if not self.enabled:
            return None
        path = self.run_dir / f"{key}.json"
        path.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
        self._record({"_kind": "json", key: obj})
        if self.run is not None:
            import wandb

            artifact = wandb.Artifact(name=f"{self.run.id}-{key}", type="json")
            artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        return path

    def summary(self, values: dict) -> None:
        """Set run summary values (final / best metrics)."""
        if not self.enabled:
            return
        self._record({"_kind": "summary", **values})
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        """Close the W&B run (flushes the offline file); safe to call twice."""
        if self.run is not None:
            self.run.finish()
            self.run = None


def read_wandb_records(run_dir: str | Path) -> list[dict]:
    """All records of the latest W&B run file under ``run_dir``, as dicts.

    wandb 0.31 dropped its Python reader of ``.wandb`` files; the supported reader is
    ``wandb-core leet inspect --json`` (what ``wandb leet inspect`` runs): one JSON record a
    line, each with a "type" ("history", "summary", "artifact", ...) and a payload under
    that name.
    """
    from wandb.util import get_core_path

    files = sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no .wandb file under {run_dir}/wandb")
    cmd = [get_core_path(), "leet", "inspect", "--no-observability", "--json"]
    cmd += ["--run-file", str(files[-1]), str(files[-1].parent.parent)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def read_wandb_history(run_dir: str | Path) -> list[dict]:
    """History rows (one per step) of the latest W&B run under ``run_dir``.

    Keys of media values come back flattened, e.g. "cell._type" == "image-file".
    """
    records = read_wandb_records(run_dir)
    return [r["history"]["item"] for r in records if r.get("type") == "history"]


def tracker_for_run(
    cfg: DictConfig, run_dir: Path, rank: int = 0, name: str | None = None
) -> Tracker:
    """The tracker a tool config asks for: keys ``tracking``, ``wandb_project``, ``run_name``."""
    from omegaconf import OmegaConf

    return Tracker.create(
        mode=cfg.tracking,
        project=cfg.wandb_project,
        run_dir=run_dir,
        config=OmegaConf.to_container(cfg, resolve=True),
        name=name or cfg.get("run_name"),
        rank=rank,
    )
