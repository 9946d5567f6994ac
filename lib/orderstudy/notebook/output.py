"""How the notebooks show progress bars and library messages, so an executed notebook reads cleanly.

``configure()`` is the first thing the ordering notebook runs. It

- shows progress bars as bars in JupyterLab (ipywidgets) and, under papermill (the runner sets
  ``ORDERSTUDY_PROGRESS=lines``), as one line per bar printed when the bar closes, instead of one
  line per update; a bar that closes within ``SHORT_S`` (loading a small checkpoint, building
  one lm-eval request) leaves nothing behind in either mode;
- turns off the ``datasets`` bars ("Generating test split", one per task and evaluation: the
  study's data are small local files);
- hides the library messages in ``HIDDEN``, which a reader can do nothing about; each says why.
  Every other warning is shown, once per place it comes from (Python's default).

It changes only what is displayed, never what is computed. ``tqdm`` is patched at module level
(``tqdm.tqdm``, ``tqdm.auto.tqdm``), so the libraries imported after ``configure()`` use the
notebook's bars; transformers looks its bar up at each call, so it follows even when imported first.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

ENV = "ORDERSTUDY_PROGRESS"
SHORT_S = 1.0


@dataclass(frozen=True)
class Hidden:
    """A library message that is hidden: where it comes from, its text (a regex), and why it does not matter."""

    source: str  # a logger name, or a warning category's name (FutureWarning, TqdmWarning)
    message: str
    why: str


HIDDEN = (
    Hidden("bitsandbytes.backends.cpu.ops", r"Failed to load CPU gemm_4bit_forward from kernels-community",
           "bitsandbytes looks for the optional `kernels` package, which downloads kernels from the model hub at run "
           "time; the project never installs it, and bitsandbytes runs its own CPU kernel instead"),
    Hidden("lm_eval.models.huggingface", r"`pretrained` model kwarg is not of type `str`",
           "the study hands lm-eval the model it loaded itself, on purpose (any layout: quantized, sparse, adapter)"),
    Hidden("lm_eval.models.huggingface", r"Passed an already-initialized model through `pretrained`",
           "the same: one process evaluates the model the study loaded"),
    Hidden("FutureWarning", r"`is_gradient_checkpointing` is deprecated",
           "peft reads a transformers attribute that transformers renames in version 6; nothing changes for the study"),
    Hidden("transformers.integrations.bitsandbytes", r"The modules are dequantized in",
           "a 4-bit state is scored on a CPU as its dequantized dense model, on purpose (equivalent.evaluation_model); "
           "every result records how it was scored and how far that is from bitsandbytes' own model"),
    Hidden("TqdmWarning", r"IProgress not found",
           "without ipywidgets tqdm draws text bars; the pins include ipywidgets, and under papermill bars are lines"),
)


def mode() -> str:
    """Return how progress bars show here: ``lines`` (papermill, set by the runner) or ``bars``."""
    return "lines" if os.environ.get(ENV) == "lines" else "bars"


def configure(progress: str | None = None) -> str:
    """Set up progress bars and hide ``HIDDEN``'s messages; return the progress mode (``bars`` or ``lines``)."""
    progress = progress or mode()
    hide_library_noise()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is pinned
        pass
    bar = FinalLineBar if progress == "lines" else _widget_bar()
    if bar is not None:
        import tqdm
        import tqdm.auto
        import tqdm.autonotebook

        tqdm.tqdm = tqdm.auto.tqdm = tqdm.autonotebook.tqdm = bar
    return progress


@contextmanager
def papermill_progress():
    """Within the block, notebooks started (by papermill) print one line per progress bar."""
    previous = os.environ.get(ENV)
    os.environ[ENV] = "lines"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous


class _MessageFilter(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def hide_library_noise() -> None:
    """Hide every message of ``HIDDEN`` (idempotent)."""
    categories = {"FutureWarning": FutureWarning, "UserWarning": UserWarning, "DeprecationWarning": DeprecationWarning}
    for hidden in HIDDEN:
        if hidden.source in categories or hidden.source.endswith("Warning"):
            category = categories.get(hidden.source) or _tqdm_warning()
            warnings.filterwarnings("ignore", message=f"(?s).*{hidden.message}", category=category)
            continue
        logger = logging.getLogger(hidden.source)
        if not any(isinstance(f, _MessageFilter) and f.pattern.pattern == hidden.message for f in logger.filters):
            logger.addFilter(_MessageFilter(hidden.message))


def _tqdm_warning():
    from tqdm import TqdmWarning

    return TqdmWarning


def _std_tqdm():
    from tqdm.std import tqdm

    return tqdm


class FinalLineBar(_std_tqdm()):
    """A tqdm bar that prints nothing while it runs and one line when it closes, unless it took under ``SHORT_S``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("file", sys.stdout)  # stderr would colour every bar as an error in the notebook
        kwargs["delay"] = math.inf  # never drawn while running (tqdm draws once ``delay`` has passed)
        super().__init__(*args, **kwargs)

    def close(self):
        if not getattr(self, "disable", True) and self._time() - self.start_t >= SHORT_S:
            line = self.format_meter(**self.format_dict)
            self.fp.write(line + "\n")
            self.fp.flush()
        super().close()


@lru_cache(maxsize=None)
def _widget_bar():
    """Return the notebook bar class (ipywidgets), or None where ipywidgets is missing (text bars stay)."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return None

    class WidgetBar(notebook_tqdm):
        """tqdm's notebook bar, removed when it closes within ``SHORT_S`` (it told the reader nothing)."""

        def close(self):
            if not getattr(self, "disable", True) and self._time() - self.start_t < SHORT_S:
                self.leave = False
            super().close()

    return WidgetBar
