"""orderstudy: does the order of fine-tuning, pruning and quantization matter, and how much?"""

__version__ = "0.1.0"

# The built-in operations and benchmarks register themselves here, so that every layer (the
# report included) finds them in the registries (core/operation.py, core/benchmark.py) without
# importing them.
from . import operations  # noqa: E402,F401
from . import benchmarks  # noqa: E402,F401
