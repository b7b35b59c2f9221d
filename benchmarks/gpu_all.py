"""Everything no GPU has measured yet, in one process, as one markdown table (issue 35): run it in the first session
that is lent a GPU, with a timeout that leaves time to run it once more.

Sections (each a benchmark of this folder, called in this process with the arguments shown in the table):
- ``engine_speed``: 60k-image self-influence and the 1000 × 60k matrix, MLP and CNN (target: CNN self ≤ 0.1 s);
- ``label_bias``: the full MNIST 4/9 Label bias pipeline (target ≤ 60 s);
- ``glitch_signals``: Glitch signals on 6k MNIST with the CNN;
- ``lds_published``: LDS in the published setting, logistic regression and the MLP (MNIST 5k / 500);
- ``lds_iterative``: CG and LiSSA on the MLP (about 50 min on the 2-core CPU);
- ``peers_cnn``: the peers' CNN rows (needs captum, kronfluence and dattri on that machine; reported as not run
  otherwise);
- ``exact_attribution_mnist``: exact attribution's LDS on the MNIST MLP with 500 queries, beside EK-FAC, TRAK and
  TracIn (issue 31's GPU figure).

A section that fails is reported with its error and the next one starts; a section whose estimate would pass
``--budget`` is not started, and the table says so. Each section's wall time is measured around its call.

MNIST on a machine with no network: write the IDX files here first (``--prepare-data``: from the local MNIST source
into ``data/mnist``, which git ignores), then carry ``data/mnist``. The device call, from the repository root::

    python benchmarks/gpu_all.py --prepare-data            # here, once
    # device run, carry ["data/mnist"], timeout_s 600:
    PYTHONUNBUFFERED=1 python benchmarks/gpu_all.py --budget 480 --out $OUT/gpu_all.md

``--smoke`` runs every section's small CPU variant (the wiring check; its figures mean nothing).

The device image has torch, torchvision, scikit-learn, pandas and scipy but not the rest of requirements.txt: carry
wheels for Python 3.12 (the device README's recipe, into the ignored ``.whl``), at least laplace-torch,
curvlinops-for-pytorch, backpack-for-pytorch, unfoldNd, einconv, asdfghjkl, cleanlab, plotly, dask, distributed,
zarr and their missing needs, and for ``peers_cnn`` captum, kronfluence and dattri. The table's header lists what this
process could not import, so a first run says what to carry.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib.util
import io
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


@dataclass(frozen=True)
class Section:
    name: str
    script: str  # a benchmark of this folder, run through its main()
    args: tuple[str, ...]  # on a GPU
    smoke_args: tuple[str, ...]  # the small CPU variant
    what: str
    estimate_s: float  # expected wall time on an H100, from the CPU figures scaled (a guess until measured)


SECTIONS = (
    Section(
        "engine_speed",
        "engine_speed.py",
        (),
        ("--quick", "--models", "mlp"),
        "60k self-influence and 1000 × 60k matrix, MLP and CNN",
        60,
    ),
    Section(
        "label_bias",
        "label_bias.py",
        ("--dataset", "mnist", "--n-train", "0"),
        ("--quick", "--dataset", "digits"),
        "Label bias, full MNIST 4/9",
        90,
    ),
    Section(
        "glitch_signals",
        "signals.py",
        ("--model", "cnn", "--n-train", "6000", "--seeds", "1"),
        ("--quick", "--scenarios", "digits_singular"),
        "Glitch signals, 6k MNIST, the CNN",
        90,
    ),
    Section(
        "lds_published",
        "lds.py",
        ("--models", "logreg,mlp"),
        ("--quick", "--models", "logreg", "--subsets", "6"),
        "LDS, MNIST 5k/500, logistic regression and the MLP",
        150,
    ),
    Section(
        "lds_iterative",
        "lds.py",
        ("--models", "mlp", "--methods", "influence@cg,influence@lissa"),
        ("--quick", "--models", "mlp", "--methods", "influence@cg", "--subsets", "6"),
        "LDS of CG and LiSSA on the MLP",
        150,
    ),
    Section("peers_cnn", "peers.py", (), ("--quick",), "captum / kronfluence / dattri side by side (MLP and CNN rows)", 120),
    Section(
        "exact_attribution_mnist",
        "exact_attribution.py",
        ("--parts", "lds", "--dataset", "mnist", "--n-train", "5000", "--n-test", "500", "--settings", "sgd"),
        (
            "--parts",
            "lds",
            "--quick",
            "--n-test",
            "5",
            "--subsets",
            "3",
            "--fractions",
            "0.05",
            "--settings",
            "sgd",
            "--methods",
            "metagradient",
        ),
        "exact attribution's LDS, MNIST MLP 5k / 500 queries (issue 31; 100 queries were estimated at 12 min on the CPU)",
        240,
    ),
)


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy (the table quotes each section's last lines)."""

    def __init__(self, stream):
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.stream.flush()
        return self.kept.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _main_of(script: str):
    name = f"bench_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, HERE / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script defines them
    spec.loader.exec_module(module)
    return module.main


def run_section(section: Section, smoke: bool) -> dict:
    """One benchmark called in this process: its wall time, whether it ended well, and what it printed."""
    args = section.smoke_args if smoke else section.args
    saved_argv, tee = sys.argv, _Tee(sys.stdout)
    sys.argv = [section.script, *args]
    status, start = "ok", time.perf_counter()
    try:
        with contextlib.redirect_stdout(tee):
            outcome = _main_of(section.script)()
        if isinstance(outcome, int) and outcome != 0:
            status = f"exit {outcome}"
    except SystemExit as stop:
        status = "ok" if stop.code in (0, None) else f"exit {stop.code}"
    except ImportError as missing:
        status = f"not run: {missing} (install it on that machine)"
    except Exception as error:  # a failed section is reported; the next one starts
        status = f"failed: {type(error).__name__}: {error}"
        tee.kept.write(traceback.format_exc())
    finally:
        sys.argv = saved_argv
    return {
        "section": section,
        "command": " ".join(["python", f"benchmarks/{section.script}", *args]),
        "seconds": time.perf_counter() - start,
        "status": status,
        "output": tee.kept.getvalue(),
    }


def device_line() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), torch {torch.__version__}"


NEEDED = ("laplace", "curvlinops", "backpack", "cleanlab", "plotly", "dask", "distributed", "zarr", "captum", "kronfluence", "dattri")


def missing_modules() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def markdown(results: list[dict], skipped: list[Section], smoke: bool, total: float) -> str:
    missing = missing_modules()
    lines = [
        f"### gpu_all.py{' --smoke (wiring check, figures mean nothing)' if smoke else ''}: {device_line()}",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, one process, {total:.0f} s in all."
        + (f" Not importable here: {', '.join(missing)}." if missing else ""),
        "",
        "| section | what | command | wall s | status |",
        "|---|---|---|---:|---|",
    ]
    for r in results:
        s = r["section"]
        lines.append(f"| {s.name} | {s.what} | `{r['command']}` | {r['seconds']:.1f} | {r['status'].replace('|', '/')} |")
    for s in skipped:
        lines.append(
            f"| {s.name} | {s.what} | `{' '.join(s.args)}` | — | not started: its estimate ({s.estimate_s:.0f} s) passed the budget |"
        )
    for r in results:
        tail = r["output"].rstrip().splitlines()[-40:]
        lines += ["", f"<details><summary>{r['section'].name}: last {len(tail)} lines</summary>", "", "```", *tail, "```", "</details>"]
    return "\n".join(lines) + "\n"


def prepare_mnist(folder: Path) -> None:
    """The four MNIST IDX files (gzip) written from the local MNIST source, for a machine with no network."""
    import numpy as np

    from influence_core.data.mnist import IDX_FILES, mnist_arrays

    x_train, y_train, x_test, y_test, source = mnist_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": x_train, "train_labels": y_train, "test_images": x_test, "test_labels": y_test}
    for key, stem in IDX_FILES.items():
        data = np.ascontiguousarray(arrays[key], dtype=np.uint8)
        header = (2051 if data.ndim == 3 else 2049).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
        target = folder / f"{stem}.gz"
        if target.exists():
            continue  # never overwrite a file that is there
        with gzip.open(target, "wb") as out:
            out.write(header + data.tobytes())
    print(f"MNIST IDX files in {folder} (from {source}); carry this folder to the device")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every section's small CPU variant")
    parser.add_argument("--sections", default=",".join(s.name for s in SECTIONS), help="comma list (default: all)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds: a section whose estimate would pass it is not started")
    parser.add_argument("--out", default=None, help="the markdown table (default: $OUT/gpu_all.md, else results/gpu_all.md)")
    parser.add_argument("--prepare-data", action="store_true", help="write data/mnist's IDX files from the local MNIST source, then stop")
    args = parser.parse_args(argv)
    if args.prepare_data:
        prepare_mnist(HERE.parent / "data" / "mnist")
        return 0
    known = {s.name: s for s in SECTIONS}
    wanted = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(known)}")
    out = Path(args.out or Path(os.environ.get("OUT", HERE.parent / "results")) / "gpu_all.md")
    results, skipped, start = [], [], time.perf_counter()
    for name in wanted:
        section = known[name]
        elapsed = time.perf_counter() - start
        if not args.smoke and elapsed + section.estimate_s > args.budget:
            skipped.append(section)
            continue
        print(f"\n=== {section.name} ({section.what}) at {elapsed:.0f} s ===", flush=True)
        results.append(run_section(section, args.smoke))
        out.parent.mkdir(parents=True, exist_ok=True)  # written after every section: a run cut off keeps what it measured
        out.write_text(markdown(results, skipped, args.smoke, time.perf_counter() - start))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(results, skipped, args.smoke, time.perf_counter() - start))
    print(f"\nwrote {out}")
    return 0 if all(r["status"] == "ok" or r["status"].startswith("not run") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
