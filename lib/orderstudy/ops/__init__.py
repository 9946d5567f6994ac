"""The operations, each ``apply(src_dir, dst_dir, params, ctx) -> record dict``.

Operations are pure with respect to the state store: they read one checkpoint directory and
write another. They know nothing of orderings, notebooks or caching, and never evaluate. Adding
an operation means adding its module and a line here (and its params section).
"""

from . import finetune, prune, quantize
from .common import OperationContext

OPERATIONS = {
    "F": finetune.apply,
    "P": prune.apply,
    "Q": quantize.apply,
}

__all__ = ["OPERATIONS", "OperationContext"]
