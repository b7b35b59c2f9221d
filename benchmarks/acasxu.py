"""Region-exploration benchmark (ACAS Xu paper, dataset exploration half).

Prints, per oracle family: surrogate agreement with the oracle on held-out table points (target
≥ 95 %), the median distance-to-boundary ratio of the top-decile Cook's-distance points vs the rest
(target < 1), the time of one cut after the precompute (target ≤ 300 ms) and, for the default page,
the cold page time under AppTest with an empty cache (target ≤ 60 s on the 2-core CPU).

    python benchmarks/acasxu.py            # HCAS default page config + ACAS Xu 1_1 (../shared/acasxu)
    python benchmarks/acasxu.py --quick    # small tables, a few seconds on CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from influence_core.device import default_device
from influence_core.figures.regions import cut_figure
from influence_core.regions import (
    ACASXU_LARGE,
    RegionConfig,
    boundary_distance_ratio,
    make_cut,
    rank_cut_centres,
    run_region_study,
)

ROOT = Path(__file__).resolve().parents[1]

SHARED_ACASXU = Path(os.environ.get("INFLUENCE_LAB_SHARED", ROOT.parent / "shared")) / "acasxu"


def bench_family(name: str, config: RegionConfig, n_cut_repeats: int = 5) -> dict[str, float]:
    start = time.perf_counter()
    study = run_region_study(config, use_cache=False)
    precompute = time.perf_counter() - start
    ratio = boundary_distance_ratio(study, 0.1)
    centres = rank_cut_centres(study, n_cuts=4)
    times = []
    for k in range(n_cut_repeats):
        position = centres[k % len(centres)][0]
        t = time.perf_counter()
        cut = make_cut(study, study.x_train_raw[position], resolution=80, seed_position=position)
        cut_figure(study, cut).to_dict()  # build the plotly figure as the page does
        times.append(time.perf_counter() - t)
    cut_ms = 1000 * statistics.median(times[1:] if len(times) > 1 else times)
    print(
        f"\n[{name}] {study.oracle.name}: {config.n_points} table points, surrogate {config.depth}×{config.hidden} ReLU, "
        f"{config.epochs} epochs, batch {config.effective_batch_size}"
    )
    print(f"  precompute (table + surrogate + Cook's distance): {precompute:.1f} s")
    print(
        f"  surrogate agreement, held-out: {study.agreement:.2%} (train {study.train_agreement:.2%})  "
        f"target ≥ 95 %: {'MET' if study.agreement >= 0.95 else 'MISSED'}"
    )
    print(
        f"  median boundary distance top 10 % = {ratio['median_top']:.4f}, rest = {ratio['median_rest']:.4f}, "
        f"ratio = {ratio['ratio']:.3f}  target < 1: {'MET' if ratio['ratio'] < 1 else 'MISSED'}"
    )
    print(
        f"  cut render (80×80 grid, surrogate + oracle + figure), median of {len(times)}: {cut_ms:.0f} ms  "
        f"target ≤ 300 ms: {'MET' if cut_ms <= 300 else 'MISSED'}"
    )
    print(f"  top cut centres (train position, Σ Cook in slice): {[(p, round(t, 3)) for p, t in centres]}")
    return {"agreement": study.agreement, "ratio": ratio["ratio"], "cut_ms": cut_ms, "precompute_s": precompute}


def cold_page_seconds(quick: bool) -> float:
    """The Region cuts page from an empty cache under AppTest (default widgets unless quick)."""
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as cache:
        os.environ["INFLUENCE_LAB_CACHE"] = cache
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.switch_page("pages/region_cuts.py")
        if quick:
            at.session_state["rc_points"] = 2000
            at.session_state["rc_epochs"] = 20
        start = time.perf_counter()
        at.run()
        seconds = time.perf_counter() - start
        if at.exception or at.error:
            print("  page reported:", [e.value for e in at.exception] + [e.value for e in at.error])
        metrics = {m.label: m.value for m in at.metric}
        print(f"  page metrics: {metrics}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small tables and short training (CPU smoke run)")
    parser.add_argument("--acasxu-folder", default=str(SHARED_ACASXU), help="folder with ACASXU_run2a_<prev>_<tau>_batch_2000.nnet")
    parser.add_argument("--skip-page", action="store_true", help="do not time the cold page")
    args = parser.parse_args()
    print(f"device: {default_device()}  torch threads: {__import__('torch').get_num_threads()}  quick: {args.quick}")

    hcas = RegionConfig() if not args.quick else RegionConfig(n_points=4000, epochs=30)
    bench_family("HCAS (default page config)" if not args.quick else "HCAS (quick)", hcas)
    if Path(args.acasxu_folder).is_dir():
        acas = (
            RegionConfig(family="acasxu", path=args.acasxu_folder, tau=1, **ACASXU_LARGE)
            if not args.quick
            else RegionConfig(family="acasxu", path=args.acasxu_folder, tau=1, n_points=5000, hidden=64, depth=4, epochs=30)
        )
        bench_family("ACAS Xu 1_1 (prev COC, τ = 0 s)", acas)
    else:
        print(f"\n[ACAS Xu] skipped: no folder {args.acasxu_folder}")
    if not args.skip_page:
        seconds = cold_page_seconds(args.quick)
        label = "quick settings (2 000 points, 20 epochs)" if args.quick else "default settings"
        print(f"\n[page] Region cuts from cold, {label}: {seconds:.1f} s  target ≤ 60 s: {'MET' if seconds <= 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
