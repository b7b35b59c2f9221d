"""Issue 31's cost target for a one-scalar group score: exact attribution of the held-out mean loss to every training
row of Label bias's default preset (digits 4/9, the zoo CNN, 20 % of the 9s flipped), against one training of the
same run. One thread, one process, the two timed in alternated rounds, in process CPU time (on a shared machine the
ratio of work, not of how its jobs are scheduled); prints the medians and their ratio with its range.

    .venv/bin/python benchmarks/exact_attribution_label_bias.py [ROUNDS] [--split] [--compare-with OLD/replay.py]

``--split`` also times, each round, the parts of the pass (the replay's set-up, the measurement's cotangent, the
estimate said before the pass, the segments' recompute alone, and the whole reverse pass; the pull-back is the last
less the recompute), each as a multiple of that round's training. ``--compare-with`` times another replay.py in the
same rounds as the method used it before training kept the reverse pass's states: Replay, the forward replay, the
cotangent, one segment timed for the estimate, the reverse pass (``git show ad81b2d:influence_core/replay.py > /tmp/replay_before.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time


def _load_replay(path: str):
    spec = importlib.util.spec_from_file_location("replay_compared", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(rounds: int, split: bool, compare_with: str) -> None:
    os.environ.setdefault("INFLUENCE_LAB_CACHE", tempfile.mkdtemp(prefix="exact_lb_"))
    import torch

    from influence_core import experiments
    from influence_core import label_bias as lb
    from influence_core.measurements import GroupMeanLoss
    from influence_core.methods.exact_attribution import ESTIMATE_STEPS

    torch.set_num_threads(1)
    config = lb.preset_config("digits", noise_fraction=0.2, model="cnn").replace(method="metagradient")
    trained = experiments.train(config)
    _, _, x_test, y_test = experiments.tensors(trained.dataset, torch.device("cpu"))
    heldout_mean = GroupMeanLoss(x_test, y_test, [torch.arange(len(y_test))])
    context = experiments.attribution_context(config, trained)
    old = _load_replay(compare_with).Replay if compare_with else None

    def old_pass() -> None:  # the method's steps before training kept the states
        replay = old(context.model, context.training, context.x_train, context.y_train, context.task)
        final, kept = replay.run(keep=True)
        cotangents = heldout_mean.query_gradients(replay.final_model(final), replay.names).detach()
        replay.time_step(1, 1)
        replay.metagradient(cotangents, kept)

    def parts() -> dict[str, float]:
        from influence_core.replay import Replay

        seconds, start = {}, time.process_time()
        replay = Replay(context.model, context.training, context.x_train, context.y_train, context.task)
        final, kept = replay.recorded_run() or replay.run(keep=True)
        seconds["set-up"], start = time.process_time() - start, time.process_time()
        cotangents = heldout_mean.query_gradients(replay.final_model(final), replay.names).detach()
        seconds["cotangent"], start = time.process_time() - start, time.process_time()
        replay.time_step(1, 1, ESTIMATE_STEPS)
        seconds["estimate"], start = time.process_time() - start, time.process_time()
        weights = replay._weights(None)
        for segment, state in enumerate(kept):
            for index in range(segment * replay.segment, min(len(replay.steps), (segment + 1) * replay.segment)):
                state = replay._update(state, replay._gradient(state.params[0], index, weights, None, graph=True), index)
        seconds["recompute"], start = time.process_time() - start, time.process_time()
        replay.metagradient(cotangents, kept)
        seconds["reverse pass"] = time.process_time() - start
        seconds["pull-back"] = seconds["reverse pass"] - seconds["recompute"]
        return seconds

    timings: dict[str, list[float]] = {"training": [], "score": []}
    for _ in range(rounds):
        start = time.process_time()
        experiments.train(config, use_cache=False)
        timings["training"].append(time.process_time() - start)
        start = time.process_time()
        scores = experiments.fit_method(config, trained).scores(heldout_mean)
        timings["score"].append(time.process_time() - start)
        if old is not None:
            start = time.process_time()
            old_pass()
            timings.setdefault("compared", []).append(time.process_time() - start)
        for name, value in (parts() if split else {}).items():
            timings.setdefault(name, []).append(value)
    train_s, score_s = statistics.median(timings["training"]), statistics.median(timings["score"])
    ratios = [s / t for s, t in zip(timings["score"], timings["training"])]
    print(
        f"{scores.shape[1]} training rows; training {train_s:.2f} s {[round(t, 2) for t in timings['training']]}; exact "
        f"attribution (fit and one reverse pass) {score_s:.2f} s {[round(t, 2) for t in timings['score']]}: "
        f"{statistics.median(ratios):.2f}x one training [{min(ratios):.2f}-{max(ratios):.2f}] (target <= 3x)"
    )
    for name, values in timings.items():
        if name in ("training", "score"):
            continue
        ratios = [v / t for v, t in zip(values, timings["training"])]
        print(f"  {name}: {statistics.median(values):.3f} s, {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=3)
    parser.add_argument("--split", action="store_true", help="also time the parts of the pass")
    parser.add_argument("--compare-with", default="", help="another replay.py, timed as the method used it before")
    args = parser.parse_args()
    main(args.rounds, args.split, args.compare_with)
