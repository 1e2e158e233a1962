"""Import shims for the pinned dependency set, kept in one place.

pytorchvideo 0.1.5 imports ``torchvision.transforms.functional_tensor``, which torchvision
renamed to ``_functional_tensor``; alias the module so ``pytorchvideo.transforms`` imports.
DeepSpeed compiles a shared-memory communication helper at first start (~40 s on CPU) that
gloo does not need, so it is marked incompatible before DeepSpeed is used.
"""

import sys
import warnings

import torchvision.transforms._functional_tensor as _functional_tensor

sys.modules.setdefault("torchvision.transforms.functional_tensor", _functional_tensor)

# pytorchvideo 0.1.5 decorates with torch.jit.script_method at import; torch 2.14 warns on
# every run. Nothing here scripts models, so the warning is noise for our users.
warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*", category=FutureWarning)


def disable_deepspeed_shm_build() -> None:
    """Stop DeepSpeed from compiling its shared-memory op (not needed over gloo)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
