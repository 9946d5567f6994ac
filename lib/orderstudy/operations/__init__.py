"""The operations, each ``apply(src_dir, dst_dir, params, ctx) -> record dict``.

Operations are pure with respect to the state store: they read one checkpoint directory and
write another. They know nothing of orderings, notebooks or caching, and never evaluate. Adding
an operation means adding its module and a line in each table here (and its params section).
"""

from . import finetune, prune, quantize
from .common import OperationContext

OPERATIONS = {
    "F": finetune.apply,
    "P": prune.apply,
    "Q": quantize.apply,
}

# Whether an operation's result depends on the random seed, given its parameters. A state that
# such a step made (itself or an ancestor) is built once per seed of the study; the others are
# built once and shared by every seed.
STOCHASTIC = {
    "F": lambda params: True,  # LoRA initialisation, dropout, the order of the training pairs
    "P": lambda params: params.needs_calibration,  # the calibration sample is drawn by seed
    "Q": lambda params: False,  # round-to-nearest codes: the same for every seed
}

__all__ = ["OPERATIONS", "STOCHASTIC", "OperationContext"]
