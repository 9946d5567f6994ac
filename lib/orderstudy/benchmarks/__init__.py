"""The benchmarks, each a package that declares a ``Benchmark`` (core/benchmark.py), and their shared parts.

Shared: the data loaders (``data``), the generation budgets (``budgets``), the lm-eval task
templates and their Python side (``tasks/``). Adding a benchmark means adding its package and a
line here; importing ``orderstudy`` registers these (their classes alone: no torch, no lm-eval).
"""

from ..core.benchmark import register_benchmark
from .fidelity.benchmark import FLIP, KL
from .lawbench.benchmark import LAWBENCH
from .mmlu.benchmark import LAW, STEM

# The registry order is the order of the benchmarks in the params' default, results and tables.
# The fidelity benchmarks (kl, flip) compare a state with the base; a study asks for them by name.
BUILT_IN = (LAWBENCH, STEM, LAW, KL, FLIP)

for _benchmark in BUILT_IN:
    register_benchmark(_benchmark)
