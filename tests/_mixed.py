"""Mixed-type CSV generators: the table a data scientist meets first, written here (no downloads).

Each table has 10 numeric features on different scales (some informative, some noise, one
interaction), a free-text column drawn from short phrases (some carry signal), a constant column
and missing values in several columns. With ``n=573`` rows the default split (15% valid, 15% test)
leaves 86 test rows. ``kind="binary"`` has a yes/no target that is mostly linear in the features;
``kind="regression"`` a noisy numeric target (R² around 0.2-0.3 is the best any model reaches).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ADJECTIVES = ["great", "slow", "friendly", "broken", "late", "cheap", "fine", "noisy"]
NOUNS = ["delivery", "service", "product", "support", "price"]
SIGNAL = {"great": 1.0, "friendly": 0.7, "fine": 0.2, "cheap": 0.3, "slow": -0.6, "broken": -1.0, "late": -0.8,
          "noisy": -0.3}


def make_mixed(kind: str = "binary", seed: int = 0, n: int = 573) -> pd.DataFrame:
    """A mixed-type table with a ``target`` column.

    Args:
        kind: ``binary`` (target ``yes``/``no``) or ``regression`` (a float target).
        seed: Seed of the generator (the same seed gives the same table).
        n: Rows.
    """
    if kind not in ("binary", "regression"):
        raise ValueError(f"kind must be binary or regression, but got {kind!r}")
    rng = np.random.default_rng(seed)
    age = rng.normal(42, 12, n).round()
    income = np.exp(rng.normal(10.5, 0.5, n)).round(-2)
    visits = rng.poisson(4, n).astype(float)
    tenure = rng.gamma(2.0, 2.0, n).round(1)
    score = rng.normal(600, 80, n).round()
    x = {"age": age, "income": income, "visits": visits, "tenure": tenure, "score": score}
    for j in range(5):  # noise features on various scales
        x[f"noise{j}"] = rng.normal(0, 10 ** (j - 2), n)
    words = [f"{a} {b}" for a, b in zip(rng.choice(ADJECTIVES, n), rng.choice(NOUNS, n), strict=True)]
    text_signal = np.array([SIGNAL[w.split()[0]] for w in words])
    z = {k: (v - v.mean()) / v.std() for k, v in x.items() if not k.startswith("noise")}
    linear = (0.9 * z["income"] - 0.7 * z["age"] + 0.6 * z["visits"] + 0.4 * z["tenure"] + 0.5 * z["score"]
              + 0.8 * text_signal + 0.3 * z["visits"] * z["tenure"])
    frame = pd.DataFrame(x)
    frame["comment"] = words
    frame["source"] = "web"  # constant: carries nothing
    if kind == "binary":
        p = 1.0 / (1.0 + np.exp(-3.0 * linear))
        frame["target"] = np.where(rng.random(n) < p, "yes", "no")
    else:
        frame["target"] = (50 + 8 * linear + rng.normal(0, 18, n)).round(2)
    for column, share in (("income", 0.08), ("tenure", 0.1), ("score", 0.05), ("noise1", 0.05)):
        frame.loc[rng.random(n) < share, column] = np.nan
    frame.loc[rng.random(n) < 0.05, "comment"] = None
    return frame


def write_mixed(path: str | Path, kind: str = "binary", seed: int = 0, n: int = 573) -> Path:
    """Write :func:`make_mixed` to a CSV file and return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    make_mixed(kind, seed, n).to_csv(out, index=False)
    return out
