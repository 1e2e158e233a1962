"""hybridnas: hybrid differentiable + evolutionary architecture search for video networks."""

import os

# OpenMP threads that spin while waiting make a CPU run 10-20x slower as soon as another
# process shares the cores (measured: 29 s vs 2.2 s per supernet step); passive waiting costs
# little when the machine is idle. Only effective before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hybridnas import compat as _compat  # noqa: E402, F401  (before pytorchvideo imports)

__version__ = "0.1.0"
