"""Text forms of release reports: what ``kit release status`` prints and the Package panel shows."""

from __future__ import annotations

from typing import Any

from kit.errors import ConfigError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str | float) -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``24h`` or ``7d``.

    Raises:
        ConfigError: Naming ``window`` when the text is none of these or not positive.
    """
    raw = str(text).strip().lower()
    scale = UNITS.get(raw[-1:])
    number = raw[:-1] if scale else raw
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ConfigError(f"window must be seconds or a number with s, m, h or d (24h), but got {text!r}",
                          field="window") from None
    if not seconds > 0:
        raise ConfigError(f"window must be positive, but got {text!r}", field="window")
    return seconds


def _metric(m: dict[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    if m.get("low") is None:
        return f"{m['value']:.4f}"
    return f"{m['value']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def format_status(report: dict[str, Any]) -> str:
    """The champion-vs-challenger table, agreement, recommendation and tests of :func:`~kit.release.status`."""
    r = report["release"]
    mode = f"canary {r['percent']:g}%" if r["mode"] == "canary" else r["mode"]
    trial = f"challenger {r['challenger']} ({mode})" if r["challenger"] else "no challenger"
    window = _duration(report["window"]["seconds"])
    cut = " (truncated to the most recent rows)" if report["window"]["truncated"] else ""
    lines = [f"{report['name']}: champion {r['champion'] or '-'}, {trial}; window {window}{cut}; "
             f"store {report['store']}", ""]
    versions = report["versions"]
    if not versions:
        lines.append("no predictions in the window")
    else:
        estimates = [(v.get("estimated") or {}).get("metrics", {}) for v in versions]
        names = sorted({k for v in versions for k in v["metrics"]} | {k for e in estimates for k in e})
        head = ["", *[f"{v['role']} {v['tag']}" for v in versions]]
        rows = [["predictions", *[str(v["predictions"]) for v in versions]],
                ["routes", *[", ".join(f"{k} {n}" for k, n in v["routes"].items()) for v in versions]],
                ["error rate", *[_metric(v["error_rate"]) for v in versions]],
                ["latency p50 / p99 ms", *[_latency(v["latency_ms"]) for v in versions]],
                ["labelled", *[str(v["labelled"]) for v in versions]]]
        for name in names:
            rows.append([name, *[_metric(v["metrics"].get(name)) for v in versions]])
        for name in names:
            if any(e.get(name) for e in estimates):
                rows.append([f"{name} (estimated, unlabelled)", *[_metric(e.get(name)) for e in estimates]])
        widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
        for row in [head, *rows]:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        estimated = next((v["estimated"] for v in versions if (v.get("estimated") or {}).get("method")), None)
        if estimated:
            lines.append(f"estimate: {estimated['method']}")
    agreement = report.get("agreement") or {}
    if "paired" in agreement:
        p = agreement["paired"]
        if "value" in p:
            lines.append(f"agreement on shadow pairs: {_metric(p)} over {p['pairs']} pairs "
                         f"({p['disagreements']} disagree)")
        else:
            lines.append(f"shadow pairs: {p['pairs']}, mean |difference| {p['mean_abs_difference']:.4g}")
    if "distribution" in agreement and agreement["distribution"].get("p_value") is not None:
        d = agreement["distribution"]
        lines.append(f"prediction distributions: {d['test']}, statistic {d['statistic']:.4g}, p={d['p_value']:.3g}")
    rec = report.get("recommendation")
    if rec:
        lines += ["", f"recommendation: {rec['action'].upper()}", *[f"  - {why}" for why in rec["reasons"]]]
        if rec["tests"]:
            lines.append("tests:")
            for t in rec["tests"]:
                stat = f", statistic {t['statistic']:.4g}" if isinstance(t.get("statistic"), float) else ""
                p = f", p={t['p_value']:.3g}" if t.get("p_value") is not None else ""
                lines.append(f"  - {t['what']}: {t['test']}{stat}{p}")
    return "\n".join(lines)


def _latency(lat: dict[str, Any]) -> str:
    if lat.get("p50") is None:
        return "-"
    return f"{lat['p50']:.2f} / {lat['p99']:.2f}"


def format_history(entries: list[dict[str, Any]]) -> str:
    """The promotion log, one line per change."""
    out = []
    for e in entries:
        event = e.get("event")
        if event == "promote":
            what = f"champion {e.get('tag')} (was {e.get('previous') or 'none'})"
        elif event == "canary":
            what = f"canary {e.get('tag')} at {e.get('percent') or 0:g}% beside {e.get('champion')}"
        elif event == "shadow":
            what = f"shadow {e.get('tag')} beside {e.get('champion')}"
        elif event == "rollback":
            what = f"rollback of {e.get('from')}, serving {e.get('tag')}"
        else:
            what = str(e)
        auto = " [automatic]" if e.get("auto") else ""
        out.append(f"{e.get('revision', '?'):>4}  {e.get('at', '')}  {e.get('by', '')}@{e.get('host', '')}  "
                   f"{what}{auto}: {e.get('reason', '')}")
    return "\n".join(out)
