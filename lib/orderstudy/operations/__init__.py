"""The operations, each a package that declares an ``OperationSpec`` (core/operation.py).

Operations are pure with respect to the state store: ``apply(src_dir, dst_dir, params, ctx)``
reads one checkpoint directory, writes another and returns a record dict. They know nothing of
orderings, notebooks or caching, and never evaluate. Adding an operation means adding its package
and a line here; importing ``orderstudy`` registers these (the specs alone: no torch).
"""

from ..core.operation import register_operation
from . import finetune, prune, quantize

# The registry order is the order of the letters in generated orderings and in the report.
BUILT_IN = (finetune.SPEC, prune.SPEC, quantize.SPEC)

for _spec in BUILT_IN:
    register_operation(_spec)
