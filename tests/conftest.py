"""Shared test settings: no test reaches a network, torch stays on few threads."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see hybridnas/__init__.py

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
