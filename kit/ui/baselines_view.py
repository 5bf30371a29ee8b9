"""The network next to its baselines, as the Train panel shows it (an HTML table and one sentence)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from kit.ui._base import table_html

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


def baselines_html(bundle: ModelBundle) -> str:
    """The test metrics of the network and of each baseline fitted on the same split (empty without them)."""
    section = bundle.baselines
    if section is None:
        return ""
    rows: list[dict[str, Any]] = [{"model": str(name), **{str(k): v for k, v in row.items()
                                                          if k != "fit_seconds" or v == v}}  # NaN: the network
                                  for name, row in section.table().to_dict("index").items()]
    best, gap = section.best(), section.gap()
    if best is None or gap is None:
        return table_html(rows)
    verdict = "trails" if gap > 0 else "matches or beats"
    color = "#b00020" if gap > 0.01 else "#1a7f37"
    line = (f"<p>Baselines on the same split ({section.rows.get('test')} test rows): the network "
            f"<b style='color:{color}'>{verdict}</b> the best baseline, {html.escape(best[0])} "
            f"({section.metric} {best[1]:.4f}), by {abs(gap):.4f}.</p>")
    return line + table_html(rows)
