"""What a pruning records of itself: which channels each layer kept, and histograms of the scores."""

from __future__ import annotations

import torch


def width_record(channel_scores: list[torch.Tensor], kept_channels: list[torch.Tensor],
                 group_scores: list[torch.Tensor]) -> dict:
    """Return which MLP channels each layer kept (bitmasks) and the importance scores, compactly.

    ``kept_channels_by_layer`` holds one bitmask a layer (``mask_text``; 192 bytes of text for
    1,536 channels); the channel scores are kept as a histogram, the few group scores in full.
    """
    size = int(channel_scores[0].numel())
    masks = [torch.zeros(size, dtype=torch.bool).index_fill_(0, ids.cpu(), True) for ids in kept_channels]
    histogram = ScoreHistogram()
    for scores, mask in zip(channel_scores, masks):
        histogram.add(scores, mask)
    return {
        "kept_channels_by_layer": {"size": size, "encoding": MASK_ENCODING, "layers": [mask_text(m) for m in masks]},
        "channel_score_histogram": histogram.record(),
        "group_scores_by_layer": [[float(f"{v:.6g}") for v in scores.float().tolist()] for scores in group_scores],
    }


MASK_ENCODING = "base64 of numpy.packbits (big-endian bit order), one bit a channel, 1 = kept"


def mask_text(mask: torch.Tensor) -> str:
    """Return a boolean mask as compact text (``MASK_ENCODING``).

    >>> mask_text(torch.tensor([True, False, True, True, False, False, False, False, True]))
    'sIA='
    """
    import base64

    import numpy as np

    return base64.b64encode(np.packbits(mask.cpu().numpy().astype(np.uint8)).tobytes()).decode("ascii")


def mask_from_text(text: str, size: int):
    """Return the boolean numpy mask of ``size`` bits that ``mask_text`` wrote.

    >>> mask_from_text("sIA=", 9).astype(int).tolist()
    [1, 0, 1, 1, 0, 0, 0, 0, 1]
    """
    import base64

    import numpy as np

    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=size).astype(bool)


class ScoreHistogram:
    """A histogram of importance scores over fixed log10 bins, counted apart for what was kept and removed.

    Scores of every magnitude fit: the bins run from 1e-12 to 1e12 (``BINS`` a decade), anything
    outside counts in the first or last bin, and a score of zero in the first. The record keeps
    only the bins from the first to the last that hold a count (a few dozen numbers).
    """

    LOW, HIGH, BINS = -12.0, 12.0, 40

    def __init__(self):
        n = int((self.HIGH - self.LOW) * self.BINS)
        self.kept = torch.zeros(n, dtype=torch.long)
        self.removed = torch.zeros(n, dtype=torch.long)

    def add(self, scores: torch.Tensor, kept: torch.Tensor) -> None:
        """Count ``scores`` (any shape) into the bins, by the boolean ``kept`` of the same shape."""
        logs = torch.log10(scores.detach().float().flatten().cpu().clamp_min(10.0 ** self.LOW))
        index = ((logs - self.LOW) * self.BINS).floor().long().clamp(0, self.kept.numel() - 1)
        mask = kept.flatten().cpu()
        self.kept += torch.bincount(index[mask], minlength=self.kept.numel())
        self.removed += torch.bincount(index[~mask], minlength=self.kept.numel())

    def record(self) -> dict:
        """Return the bins that hold a count: ``log10_edges`` (one more than the counts), ``kept``, ``removed``."""
        used = torch.nonzero(self.kept + self.removed).flatten()
        if used.numel() == 0:
            return {"log10_edges": [], "kept": [], "removed": []}
        first, last = int(used[0]), int(used[-1]) + 1
        edges = [round(self.LOW + i / self.BINS, 4) for i in range(first, last + 1)]
        return {"log10_edges": edges, "kept": self.kept[first:last].tolist(), "removed": self.removed[first:last].tolist()}
