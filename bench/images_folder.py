"""A folder of 50,000 small images: load, train one epoch, score it with `kit predict`; time and peak memory per phase.

The issue asks that memory stay bounded for a folder of 50,000 small images. This writes N PNG files
(scikit-learn's 8x8 digits resampled with replacement, each with Gaussian noise of std 16 grey
levels, clipped to 0-255) into class folders ``<digit>/<index>.png`` in a temporary directory,
for N = 12,500 and 50,000 (the smaller folder is hard links to the first files of the larger), and
for each N runs, in fresh processes:

1. ``load``: ``kit.load(folder)`` (headers, then pixels into one uint8 array),
2. ``train``: ``kit.train`` of the ``cnn`` for one epoch (batch 64, no baselines), with its metrics
   on the validation and test splits and its drift reference,
3. ``save``: ``bundle.save`` (the fp32 ONNX export, checked against torch),
4. ``score``: ``kit predict --bundle DIR FOLDER out.csv`` as its own process, as a user runs it.

Peak RSS: phases 1-3 run in one process, which resets its high-water mark between them (Linux:
``echo 5 > /proc/self/clear_refs``) and reads ``VmHWM``; phase 4 is the peak RSS of the ``kit
predict`` process (``wait4``). RSS after the imports is printed as the baseline. Flat means the
50,000-image peak is the 12,500-image peak plus only what the images themselves take. Torch runs on
``--threads`` threads (1: the machine is shared). Check the load average that is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = (12_500, 50_000)


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Make the high-water mark (VmHWM) the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def write_folder(root: Path, n: int, seed: int = 0) -> float:
    """Write ``n`` noisy digit PNGs into ``root/<digit>/<index>.png``; returns the seconds it took."""
    import numpy as np
    from sklearn.datasets import load_digits

    from kit.preprocess import encode_png

    start = time.perf_counter()
    digits = load_digits()
    base = np.asarray(digits.images, dtype=np.float64) * (255.0 / 16.0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(base), n)
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for i, k in enumerate(picks):
        pixels = np.clip(np.round(base[k] + rng.normal(0.0, 16.0, (8, 8))), 0, 255).astype(np.uint8)
        (root / str(int(digits.target[k])) / f"{i:06d}.png").write_bytes(encode_png(pixels))
    return time.perf_counter() - start


def link_subset(big: Path, small: Path, n: int) -> None:
    """``small``: hard links to the files of ``big`` whose index is below ``n``."""
    for path in big.rglob("*.png"):
        if int(path.stem) < n:
            target = small / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def child_train(folder: str, bundle_dir: str, threads: int) -> dict[str, Any]:
    """Phases 1 and 2 in this process: time and peak RSS of each (see the module docstring)."""
    import torch

    import kit
    from kit.train import train

    torch.set_num_threads(threads)
    out: dict[str, Any] = {"baseline_mib": status_kib("VmRSS") / 1024}
    reset_peak()
    start = time.perf_counter()
    data = kit.load(folder)
    out["load_s"], out["load_peak_mib"] = time.perf_counter() - start, status_kib("VmHWM") / 1024
    out["images"], out["pixels_mib"] = len(data.frame), data.images.nbytes / 2**20  # type: ignore[attr-defined]
    reset_peak()
    start = time.perf_counter()
    result = train(data, kit.TrainConfig(net="cnn", epochs=1, batch_size=64, seed=0), baselines=False)
    out["train_s"], out["train_peak_mib"] = time.perf_counter() - start, status_kib("VmHWM") / 1024
    reset_peak()
    start = time.perf_counter()
    result.bundle.save(bundle_dir)
    out["save_s"], out["save_peak_mib"] = time.perf_counter() - start, status_kib("VmHWM") / 1024
    out["test_accuracy"] = result.bundle.metrics["test"]["accuracy"]
    out["train_rows"] = len(result.splits.train)
    return out


def run_phases(folder: Path, work: Path, threads: int) -> dict[str, Any]:
    """Phases 1-3 for one folder, each set of phases in fresh processes."""
    bundle_dir = work / f"bundle-{folder.name}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--child-train", str(folder), str(bundle_dir),
                           "--threads", str(threads)], capture_output=True, text=True, env=env, check=True)
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    csv = work / f"scores-{folder.name}.csv"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kit.cli", "predict", "--bundle", str(bundle_dir), str(folder),
                             str(csv), "-q"], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    said = proc.stdout.read()  # "scored N rows -> out.csv with TAG [local, 1.5s]"
    _, code, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(code)
    if proc.returncode != 0:
        raise RuntimeError(f"kit predict exited with {proc.returncode}")
    out["score_s"], out["score_peak_mib"] = time.perf_counter() - start, usage.ru_maxrss / 1024
    out["score_own_s"] = float(said.rsplit(", ", 1)[1].split("s]")[0])
    out["scored"] = sum(1 for _ in csv.open()) - 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads")
    parser.add_argument("--sizes", type=lambda s: tuple(int(v) for v in s.split(",")), default=SIZES,
                        help="image counts, ascending (default 12500,50000)")
    parser.add_argument("--child-train", nargs=2, metavar=("FOLDER", "BUNDLE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_train:
        print(json.dumps(child_train(*args.child_train, threads=args.threads)))
        return
    print(f"load average before: {os.getloadavg()}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="kit-bench-images-") as tmp:
        work = Path(tmp)
        biggest = work / f"images-{args.sizes[-1]}"
        seconds = write_folder(biggest, args.sizes[-1])
        print(f"wrote {args.sizes[-1]:,} PNG files in {seconds:.1f} s "
              f"({sum(p.stat().st_size for p in biggest.rglob('*.png')) / 2**20:.1f} MiB)")
        for n in args.sizes[:-1]:
            link_subset(biggest, work / f"images-{n}", n)
        for n in args.sizes:
            rows[n] = run_phases(work / f"images-{n}", work, args.threads)
            r = rows[n]
            print(f"{n:>7,} images: load {r['load_s']:.1f} s, peak {r['load_peak_mib']:.0f} MiB | train 1 epoch "
                  f"{r['train_s']:.1f} s, peak {r['train_peak_mib']:.0f} MiB | save (ONNX export) {r['save_s']:.1f} s, "
                  f"peak {r['save_peak_mib']:.0f} MiB | kit predict {r['score_s']:.1f} s ({r['score_own_s']:.1f} s "
                  f"after start-up), peak {r['score_peak_mib']:.0f} MiB | after imports {r['baseline_mib']:.0f} MiB, "
                  f"pixels {r['pixels_mib']:.1f} MiB, {r['train_rows']:,} training images, test accuracy "
                  f"{r['test_accuracy']:.3f}, scored {r['scored']:,}")
    small, big = rows[args.sizes[0]], rows[args.sizes[-1]]
    grow = args.sizes[-1] - args.sizes[0]
    times = args.sizes[-1] / args.sizes[0]
    for phase in ("load", "train", "save", "score"):
        low, high = small[f"{phase}_peak_mib"], big[f"{phase}_peak_mib"]
        print(f"{phase:>5}: peak {low:.0f} -> {high:.0f} MiB (x{high / low:.2f}; {(high - low) * 2**20 / grow:,.0f} "
              f"bytes per extra image); time x{big[f'{phase}_s'] / small[f'{phase}_s']:.2f} for x{times:.0f} images")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
