"""Analysis of trained students: spike/operation counting and energy, reports, activation-map
pictures, training curves, NIR export."""

from spikedistill.analysis.counting import (E_AC_PJ, E_MAC_PJ, OpCounter, ann_flops, count_model,
                                            summarize)

__all__ = ["E_AC_PJ", "E_MAC_PJ", "OpCounter", "ann_flops", "count_model", "summarize"]
