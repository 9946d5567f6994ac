"""The examples in the operation modules' docstrings hold."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["ops.prune", "ops.sparse_format", "ops.common", "ops.finetune", "checkpoint_info"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"orderstudy.{module}"))
    assert result.attempted > 0 and result.failed == 0
