"""The grokking analysis (Tian): when train and test accuracy are reached, and the delay between them."""

from __future__ import annotations

from ..registry import register_analysis
from ..stages import grokking_table


@register_analysis("grokking")
def grokking(inputs):
    """Per run: when train and test accuracy are reached, the grokking delay, whether it generalised.

    See `featscope.stages.grokking_table`."""
    return grokking_table(inputs.metrics(columns=["run", "step", "epoch", "split", "acc"]))
