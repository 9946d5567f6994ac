"""The examples in the report modules' docstrings hold."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["changes", "labels", "figures"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"orderstudy.report.{module}"))
    assert result.attempted > 0 and result.failed == 0
