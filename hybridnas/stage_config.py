"""Typed, frozen configs the stages take, built from a tool's Hydra tree in one place.

A tool composes its Hydra config and checks it (``hybridnas.config.check_config``); then
``SearchRun.from_cfg(cfg)`` or ``TrainRun.from_cfg(cfg)`` turns it into these dataclasses,
and only they travel further down. A stage can so be called from Python without Hydra::

    run = SearchRun(search=SearchConfig(epochs=2), model=SpaceConfig(steps=2))
    genotype, _ = run_differentiable(run, DistContext(), Path("runs/x"), tracker)

Each class mirrors one section of recipes/search.yaml or recipes/train.yaml, field for field
and with the same defaults (tests/test_stage_config.py holds them equal). A key a class does
not know is refused with the same message ``check_config`` gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hybridnas.config import ConfigError
from hybridnas.data.patchmix import PatchMixConfig
from hybridnas.ops.registry import DEFAULT_OPS
from hybridnas.search.differentiable.nse_config import NSEConfig
from hybridnas.search.evolution.faithfulness import FaithfulnessConfig
from hybridnas.search.evolution.fitness import FitnessConfig
from hybridnas.search.scorers.proxy import ProxyConfig
from hybridnas.space.macro import MacroSpec

Triple = tuple[int, int, int]
REWIRE_GUIDANCE = ("alphas", "connections")
DROP_POLICIES = ("weighted", "weakest")
MIXES = ("timm", "patchmix")


def _plain(node: Any) -> dict[str, Any]:
    """A Hydra node (or mapping) as a dict of plain values, interpolations resolved."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node)


def _build(cls: type, node: Any, prefix: str, **nested: Any) -> Any:
    """``cls(**node)`` with lists made tuples; an unknown key is a ConfigError naming it."""
    known = {f.name for f in fields(cls)}
    kw = {}
    for key, value in _plain(node).items():
        if key not in known:
            raise ConfigError(f"unknown config key '{prefix}.{key}'")
        kw[key] = tuple(value) if isinstance(value, list) else value
    return cls(**{**kw, **nested})


@dataclass(frozen=True)
class DataConfig:
    """``data.*``: the dataset's own keys (``dataset``, as ``hybridnas.data.build_dataset``
    takes them: name, root, frames, size, seed, ...) and how the loaders batch them."""

    dataset: Mapping[str, Any] = field(default_factory=lambda: {"name": "builtin"})
    batch_size: int = 32
    workers: int = 0

    @property
    def resolved(self) -> dict[str, Any]:
        """The dataset keys over ``build_dataset``'s defaults (size filled in)."""
        from hybridnas.data.build import resolve

        return resolve(self.dataset)

    def get(self, key: str, default: Any = None) -> Any:
        """A dataset key after defaults, as a mapping's ``get`` (``data.get("size")``)."""
        return self.resolved.get(key, default)

    @property
    def name(self) -> str:
        return self.resolved["name"]

    @property
    def frames(self) -> int:
        return int(self.resolved["frames"])

    @property
    def size(self) -> int:
        return int(self.resolved["size"])

    @property
    def seed(self) -> int:
        """Which clips are generated or carved (not the run seed)."""
        return int(self.resolved["seed"] or 0)

    @classmethod
    def from_cfg(cls, node: Any) -> DataConfig:
        """From the ``data`` node; an unknown dataset key fails here (``resolve``)."""
        from hybridnas.data.build import LOADER_KEYS, resolve

        d = _plain(node)
        dataset = {k: v for k, v in d.items() if k not in LOADER_KEYS}
        resolve(dataset)
        loader = {k: d[k] for k in LOADER_KEYS if k in d}
        return cls(dataset=dataset, **loader)


@dataclass(frozen=True)
class SpaceConfig:
    """``model.*`` of a search: the op vocabulary, cell size, PC-DARTS options and the macro
    skeleton's keys (see ``MacroSpec``)."""

    op_names: tuple[str, ...] = DEFAULT_OPS
    steps: int = 3
    stage_widths: tuple[int, ...] = (4, 8, 16)
    num_cells: int = 3
    stem_channels: int = 8
    stem_stride: Triple = (1, 2, 2)
    reduction_stride: Triple = (1, 2, 2)
    partial_k: int = 1
    edge_norm: bool = False

    def macro(self, data: DataConfig, num_classes: int) -> MacroSpec:
        """The skeleton these keys and the data's clip shape describe."""
        return MacroSpec.from_config(vars(self), data, num_classes)


@dataclass(frozen=True)
class SearchConfig:
    """``search.*``: the differentiable stage (recipes/search.yaml says what each key does)."""

    method: str = "sdas"
    epochs: int = 10
    warmup_epochs: int = 1
    arch_warmup_epochs: int = 1
    schedule: str = "linear"
    confidence: str = "top1"
    select: str = "alpha"
    select_batches: int = 2
    fix_margin: float = 0.0
    decide_at: float = 0.5
    beta_decay: float = 0.0
    alpha_split: str = "auto"
    max_skips: int = 2
    order: int = 1
    w_lr: float = 0.05
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 0.0003
    grad_clip: float = 5.0
    a_lr: float = 0.003
    a_betas: tuple[float, float] = (0.5, 0.999)
    a_weight_decay: float = 0.001
    steps_per_epoch: int = 24
    channels_last: bool = True
    ckpt_every_steps: int = 0
    log_every_steps: int = 10
    latency_target_ms: float = 2.5
    latency_weight: float = 0.1
    latency_table: str | None = None
    latency_threads: int = 1
    nse: NSEConfig = field(default_factory=NSEConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.nse, NSEConfig):  # a mapping from the YAML
            object.__setattr__(self, "nse", NSEConfig.from_node(self.nse))
        if self.latency_weight < 0:
            raise ConfigError(f"search.latency_weight must be >= 0, got {self.latency_weight}")
        if self.latency_weight > 0 and self.latency_target_ms <= 0:
            raise ConfigError(
                f"search.latency_target_ms must be > 0 with a latency term, got "
                f"{self.latency_target_ms} (search.latency_weight=0 turns the term off)"
            )
        if self.latency_threads < 1:
            raise ConfigError(f"search.latency_threads must be >= 1, got {self.latency_threads}")


LATENCY_SOURCES = ("table", "measured")


@dataclass(frozen=True)
class EvolutionConfig:
    """``evolution.*``: the evolutionary stage (recipes/search.yaml says what each key does);
    ``fitness`` and ``faithfulness`` are the scoring configs its keys describe."""

    scorer: str = "proxy"
    rerank_scorer: str | None = "proxy"
    rerank_top: int = 4
    population: int = 6
    sample_size: int = 3
    cycles: int = 8
    children_per_cycle: int = 2
    mutation_probs: tuple[float, ...] = (0.3, 0.3, 0.1, 0.0, 0.0, 0.1, 0.1, 0.1)
    max_inputs: int = 2
    rewire_guidance: str = "alphas"
    drop_policy: str = "weighted"
    explore: float = 0.2
    seed_temperature: float = 1.0
    width_step: float = 0.25
    min_width: int = 4
    max_width: int = 256
    conet_every: int = 4
    conet_trial_stages: int = 2
    macro_frame_scales: tuple[float, ...] = (0.5, 1.0)
    macro_frame_stride: tuple[int, ...] = (1,)
    macro_size_scales: tuple[float, ...] = (0.75, 1.0)
    macro_num_cells: tuple[int, ...] = (3, 5)
    macro_width_mults: tuple[float, ...] = (0.75, 1.25)
    latency_budget_ms: float = 2.5
    latency_mode: str = "penalty"
    latency_weight: float = 0.07
    latency_source: str = "table"
    latency_min_run_s: float = 0.05
    latency_targets: tuple[float, ...] = ()
    family_size: int = 4
    faithfulness_samples: int = 0
    faithfulness_width_scale: float = 1.0
    faithfulness_clips: int = 768
    proxy: ProxyConfig = field(default_factory=lambda: ProxyConfig(stage_clips=(512, 512)))

    def __post_init__(self) -> None:
        if self.rewire_guidance not in REWIRE_GUIDANCE:
            raise ConfigError(
                f"evolution.rewire_guidance must be one of {REWIRE_GUIDANCE}, "
                f"got {self.rewire_guidance!r}"
            )
        if self.drop_policy not in DROP_POLICIES:
            raise ConfigError(
                f"evolution.drop_policy must be one of {DROP_POLICIES}, got {self.drop_policy!r}"
            )
        if self.rewire_guidance == "connections" and "proxy" not in self.fitness.components:
            raise ConfigError(
                "evolution.rewire_guidance=connections reads the connection weights each "
                f"candidate's proxy learns, so evolution.scorer must train the proxy "
                f"(proxy, or an ensemble with it), got {self.scorer!r}"
            )
        if not 3 <= len(self.mutation_probs) <= 8 or min(self.mutation_probs) < 0:
            raise ConfigError(
                "evolution.mutation_probs: 3 to 8 non-negative weights for rewire, swap_op, "
                "change_width[, add_input, drop_input, change_clip, change_depth, scale_width], "
                f"got {list(self.mutation_probs)}"
            )
        if self.latency_source not in LATENCY_SOURCES:
            raise ConfigError(
                f"evolution.latency_source must be one of {LATENCY_SOURCES}, "
                f"got {self.latency_source!r}"
            )
        self._check_macro()
        if self.max_inputs < 1:
            raise ConfigError(f"evolution.max_inputs must be >= 1, got {self.max_inputs}")

    def _check_macro(self) -> None:
        lists = {
            "macro_frame_scales": self.macro_frame_scales,
            "macro_frame_stride": self.macro_frame_stride,
            "macro_size_scales": self.macro_size_scales,
            "macro_width_mults": self.macro_width_mults,
        }
        for name, values in lists.items():
            if not values or min(values) <= 0:
                raise ConfigError(f"evolution.{name} must list positive values, got {list(values)}")
        cells = self.macro_num_cells
        if len(cells) != 2 or not 3 <= cells[0] <= cells[1]:
            raise ConfigError(
                "evolution.macro_num_cells must be [min, max] with 3 <= min <= max, "
                f"got {list(cells)}"
            )
        if any(t <= 0 for t in self.latency_targets):
            raise ConfigError(
                f"evolution.latency_targets must be positive ms, got {list(self.latency_targets)}"
            )
        if self.family_size < 1:
            raise ConfigError(f"evolution.family_size must be >= 1, got {self.family_size}")

    @property
    def scoring_proxy(self) -> ProxyConfig:
        """The proxy config candidates are scored with: with connection-guided rewiring the
        proxy nets learn connection weights."""
        return replace(self.proxy, connection_weights=self.rewire_guidance == "connections")

    @property
    def fitness(self) -> FitnessConfig:
        return FitnessConfig.from_cfg(vars(self))

    @property
    def faithfulness(self) -> FaithfulnessConfig:
        return FaithfulnessConfig.from_cfg(vars(self))

    @classmethod
    def from_cfg(cls, node: Any) -> EvolutionConfig:
        e = _plain(node)
        proxy = e.pop("proxy", None)
        nested = {"proxy": ProxyConfig.from_cfg(proxy)} if proxy is not None else {}
        return _build(cls, e, "evolution", **nested)


@dataclass(frozen=True)
class SearchRun:
    """Everything ``tools/search.py`` hands its stages: the run seed, the weight engine,
    whether to resume, the genotype to evolve from (``stage=evolution``), and the sections."""

    seed: int = 0
    engine: str = "ddp"
    zero_stage: int = 0
    resume: bool = False
    genotype: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: SpaceConfig = field(default_factory=SpaceConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> SearchRun:
        """From a composed tools/search.py config (tool-only keys such as ``out_dir`` or
        ``tracking`` stay with the tool)."""
        return cls(
            seed=cfg.seed,
            engine=cfg.engine,
            zero_stage=cfg.zero_stage,
            resume=cfg.resume,
            genotype=cfg.get("genotype"),
            data=DataConfig.from_cfg(cfg.data),
            model=_build(SpaceConfig, cfg.model, "model"),
            search=_build(SearchConfig, cfg.search, "search"),
            evolution=EvolutionConfig.from_cfg(cfg.evolution),
        )


@dataclass(frozen=True)
class ModelConfig:
    """``model.*`` of training: which network, and (``name=genotype``) how to scale the
    genotype (null keeps the genotype's own value; see ``hybridnas.models.resolve_genotype``)."""

    name: str = "genotype"
    genotype: str | None = None
    num_cells: int | None = None
    stage_widths: tuple[int, ...] | None = None
    stem_channels: int | None = None
    width_mult: float = 1.0
    stem_stride: Triple | None = None
    dropout: float | None = None
    r2plus1d_width: int = 16
    c3d_width: int = 16
    x3d_width_factor: float = 2.0
    spatial_strides: tuple[int, ...] | None = None
    connection_weights: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """``train.*``: the training loop (recipes/train.yaml says what each key does)."""

    epochs: int = 6
    steps_per_epoch: int = 0
    opt: str = "sgd"
    lr: float = 0.05
    min_lr: float = 0.0001
    momentum: float = 0.9
    weight_decay: float = 0.0003
    sched: str = "cosine"
    warmup_epochs: float = 0
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    mix: str = "timm"
    patchmix: PatchMixConfig = field(default_factory=PatchMixConfig)
    ema: bool = True
    ema_decay: float = 0.99
    drop_path: float = 0.0
    grad_clip: float = 5.0
    amp: bool = True
    ckpt_every_steps: int = 0
    log_every_steps: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.patchmix, PatchMixConfig):  # a mapping from the YAML
            object.__setattr__(self, "patchmix", PatchMixConfig.from_node(self.patchmix))
        if self.mix not in MIXES:
            raise ConfigError(
                f"config key 'train.mix' must be one of {list(MIXES)}, got {self.mix!r}"
            )
        if self.mix == "patchmix" and (self.mixup > 0 or self.cutmix > 0):
            raise ConfigError(
                "train.mix=patchmix replaces timm's mixup/cutmix: "
                "set train.mixup=0 and train.cutmix=0"
            )


@dataclass(frozen=True)
class TrainRun:
    """Everything ``tools/train.py`` hands the training loop: the run seed, the weight engine,
    whether to resume, the weights to start from (``init_from``), and the sections."""

    seed: int = 0
    engine: str = "ddp"
    zero_stage: int = 0
    resume: bool = False
    init_from: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> TrainRun:
        """From a composed tools/train.py config."""
        return cls(
            seed=cfg.seed,
            engine=cfg.engine,
            zero_stage=cfg.zero_stage,
            resume=cfg.resume,
            init_from=cfg.get("init_from"),
            data=DataConfig.from_cfg(cfg.data),
            model=_build(ModelConfig, cfg.model, "model"),
            train=_build(TrainConfig, cfg.train, "train"),
        )
