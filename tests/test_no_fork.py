"""Nothing forks from the server process (issue 34): the own-CSV Glitch signals path, cleanlab included, run many
times from a server-like process (torch's threads busy in another thread, sessions in worker threads) must finish
every time and start no forked child. cleanlab's default pool forked such a process and hung it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER_LIKE = textwrap.dedent(
    """
    import os, sys, threading
    forks = []
    os.register_at_fork(before=lambda: forks.append(threading.current_thread().name))

    import torch
    from influence_core.processes import start_process_pools_fresh
    from influence_core.signals import GlitchConfig, detect_glitches, signal_run_config

    path, runs = sys.argv[1], int(sys.argv[2])
    start_process_pools_fresh()  # what serve.py and the app's frame do
    stop = threading.Event()

    def other_sessions():  # torch's intra-op threads busy, as while another session trains
        a = torch.randn(192, 192)
        while not stop.is_set():
            a @ a

    busy = threading.Thread(target=other_sessions, daemon=True)
    busy.start()
    errors = []

    def session(seed):
        try:
            run = signal_run_config("csv", "mlp", seed=seed, epochs=8, path=path, label_column="animal", id_column="name")
            report = detect_glitches(run, GlitchConfig(kind="none", cleanlab_folds=3), use_cache=False)
            assert "cleanlab" in report.baselines
        except BaseException as err:
            errors.append(repr(err))

    for seed in range(runs):  # two sessions at once, as two browser tabs
        pair = [threading.Thread(target=session, args=(2 * seed + k,), name=f"session-{2 * seed + k}") for k in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
    stop.set()
    busy.join()  # a daemon thread inside a torch op at interpreter exit aborts the process
    print("forks", len(forks), "errors", errors)
    sys.exit(1 if forks or errors else 0)
    """
)


def test_own_csv_glitch_signals_never_fork_nor_hang_in_a_threaded_server(animals):
    path, _ = animals
    try:
        done = subprocess.run([sys.executable, "-c", SERVER_LIKE, str(path), "4"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"the own-CSV Glitch signals path hung in a threaded process: {err.stdout!r} {err.stderr!r}") from err
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    assert "forks 0 errors []" in done.stdout


def test_library_process_pools_start_fresh_interpreters():
    """The guard itself: after it, multiprocessing's default context spawns (a pool forks nothing)."""
    check = (
        "import multiprocessing as mp\n"
        "from influence_core.processes import start_process_pools_fresh\n"
        "start_process_pools_fresh(); start_process_pools_fresh()\n"
        "print(mp.get_start_method(), type(mp.get_context()).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["spawn", "SpawnContext"], out
