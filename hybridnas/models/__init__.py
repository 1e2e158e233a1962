"""Every network the train/evaluate/export tools handle, by name (``model.name``).

``genotype`` (a found architecture, scaled by overrides) or a baseline (``x3d_xs``,
``x3d_xs_ti``, ``r2plus1d``, ``r2plus1d_18``, ``c3d``, ``frame2d``); ``list_models()`` names
them all. ``create_model(name, **kwargs)`` calls a registered builder (registry.py);
``ModelSpec`` (spec.py) is what a checkpoint stores to rebuild its network; weights.py loads
trained weights and starts a net from another run's. Importing this package registers
the builders of baselines.py and genotype_net.py.
"""

from hybridnas.models.baselines import (
    Frame2D,
    create_c3d,
    create_frame2d,
    create_r2plus1d,
    create_r2plus1d_18,
    create_tsm,
    create_x3d_xs,
    create_x3d_xs_ti,
)
from hybridnas.models.genotype_net import (
    BUILTIN_GENOTYPE,
    check_model_streams,
    create_genotype_net,
    resolve_genotype,
    scale_widths,
    scaled_width,
)
from hybridnas.models.registry import ModelEntry, create_model, list_models, register_model
from hybridnas.models.spec import (
    ModelSpec,
    build_model,
    check_fingerprint,
    fingerprint,
    model_spec,
)
from hybridnas.models.weights import init_weights, load_matching, load_trained, supernet_to_network

__all__ = [
    "BUILTIN_GENOTYPE",
    "Frame2D",
    "ModelEntry",
    "ModelSpec",
    "build_model",
    "check_fingerprint",
    "check_model_streams",
    "create_c3d",
    "create_frame2d",
    "create_genotype_net",
    "create_model",
    "create_r2plus1d",
    "create_r2plus1d_18",
    "create_tsm",
    "create_x3d_xs",
    "create_x3d_xs_ti",
    "fingerprint",
    "init_weights",
    "list_models",
    "load_matching",
    "load_trained",
    "model_spec",
    "register_model",
    "resolve_genotype",
    "scale_widths",
    "scaled_width",
    "supernet_to_network",
]
