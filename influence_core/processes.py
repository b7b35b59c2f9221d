"""No fork from a server: process pools that a library starts in this process begin as fresh interpreters.

The app's server runs torch's intra-op threads and several sessions' scripts at once. A child forked from such a
process inherits every lock that another thread held at that instant, and can sleep on one forever (cleanlab's
``find_label_issues`` pool did: the page hung, Stop did nothing, and the child kept the server's port after a
``kill -9``; issue 34). The project's own calls run in-process (``n_jobs=1``) or on Dask, whose LocalCluster
spawns; this makes "spawn" the start method for anything else, so a library's pool costs an interpreter start
instead of a deadlock.
"""

from __future__ import annotations

import multiprocessing


def start_process_pools_fresh() -> None:
    """Make ``spawn`` this process's multiprocessing start method (idempotent; call before any pool starts)."""
    if multiprocessing.get_start_method(allow_none=True) != "spawn":
        multiprocessing.set_start_method("spawn", force=True)
