"""hybridnas: hybrid differentiable + evolutionary architecture search for video networks."""

from hybridnas import compat as _compat  # noqa: F401  (must run before pytorchvideo imports)

__version__ = "0.1.0"
