"""Executed notebooks read cleanly: one line per progress bar under papermill, library noise hidden."""

from __future__ import annotations

import io
import logging
import os
import time
import warnings

from orderstudy.notebook import output as notebook_output


def run_bar(seconds: float, **kwargs) -> str:
    """Return what a final-line bar of three steps taking ``seconds`` in all writes."""
    out = io.StringIO()
    bar = notebook_output.FinalLineBar(total=3, desc="work", file=out, **kwargs)
    for _ in range(3):
        time.sleep(seconds / 3)
        bar.update(1)
    bar.close()
    return out.getvalue()


def test_a_bar_under_papermill_prints_one_final_line():
    text = run_bar(notebook_output.SHORT_S + 0.3)
    assert text.count("\n") == 1 and "\r" not in text
    assert text.startswith("work: 100%") and "3/3" in text
    assert run_bar(notebook_output.SHORT_S + 0.3, leave=False).count("\n") == 1  # leave=False bars too


def test_a_bar_that_closes_at_once_leaves_nothing():
    assert run_bar(0.0) == ""


def test_configure_makes_the_libraries_bars_final_lines(monkeypatch):
    import tqdm
    import tqdm.auto
    import tqdm.autonotebook

    for module in (tqdm, tqdm.auto, tqdm.autonotebook):
        monkeypatch.setattr(module, "tqdm", module.tqdm)  # restored after the test
    monkeypatch.setenv(notebook_output.ENV, "lines")
    assert notebook_output.configure() == "lines"
    assert tqdm.auto.tqdm is tqdm.tqdm is notebook_output.FinalLineBar
    # transformers looks its bar class up in tqdm.auto at each call.
    from transformers.utils import logging as hf_logging

    assert isinstance(hf_logging.tqdm(total=1, disable=False), notebook_output.FinalLineBar)


def test_papermill_progress_is_set_only_while_notebooks_run(monkeypatch):
    monkeypatch.delenv(notebook_output.ENV, raising=False)
    with notebook_output.papermill_progress():
        assert os.environ[notebook_output.ENV] == "lines" and notebook_output.mode() == "lines"
    assert notebook_output.ENV not in os.environ and notebook_output.mode() == "bars"


def test_library_noise_is_hidden_and_other_messages_are_not(caplog):
    notebook_output.hide_library_noise()
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "No module named 'kernels'")
        logger.warning("something that matters")
    assert [r.getMessage() for r in caplog.records] == ["something that matters"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        notebook_output.hide_library_noise()
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("a deprecation the study cares about", FutureWarning)
    assert [str(w.message) for w in caught] == ["a deprecation the study cares about"]


def test_the_studys_own_kernel_override_prints_no_warning():
    import subprocess
    import sys

    # torch warns once per process, so in a process of its own, with every warning shown.
    code = ("from orderstudy.checkpoints import numerics\n"
            "numerics.fix_bnb_cpu_dequantize()\n"
            "import torch\n"
            "from bitsandbytes.functional import dequantize_4bit, quantize_4bit\n"
            "w = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))\n"
            "q, state = quantize_4bit(w, quant_type='nf4')\n"
            "print(float((dequantize_4bit(q, state) - w).norm() / w.norm()))\n")
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Overriding a previously registered kernel" not in done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 0.12   # and the override is in place (0.40 without it)


def test_the_dequantized_scoring_message_is_hidden(caplog):
    notebook_output.hide_library_noise()
    logger = logging.getLogger("transformers.integrations.bitsandbytes")
    with caplog.at_level(logging.WARNING):
        logger.warning("The modules are dequantized in torch.bfloat16 and casted to torch.float32.")
    assert not caplog.records
