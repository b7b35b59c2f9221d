"""The sidebar's compute setting: local workers start and stop from the app; an unreachable cluster is a message."""

import socket
from pathlib import Path

from streamlit.testing.v1 import AppTest

from influence_core import distributed

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_sidebar_starts_local_workers_and_refuses_an_unreachable_cluster_without_a_traceback():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    try:
        at.sidebar.radio(key="compute_where").set_value("cluster").run()
        at.sidebar.text_input(key="compute_address").set_value(f"tcp://127.0.0.1:{_free_port()}").run()
        at.sidebar.button(key="compute_apply").click().run()
        assert not at.exception, at.exception
        assert any("could not reach the Dask scheduler" in e.value for e in at.error), [e.value for e in at.error]
        assert distributed.current().local

        at.sidebar.radio(key="compute_where").set_value("local").run()
        at.sidebar.number_input(key="compute_workers").set_value(1).run()
        at.sidebar.button(key="compute_apply").click().run()
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        assert distributed.current().workers == 1 and distributed.n_workers() == 1
        assert any("1 worker process" in s.value for s in at.success)

        at.sidebar.radio(key="compute_where").set_value("one").run()
        at.sidebar.button(key="compute_apply").click().run()
        assert distributed.current().local and distributed.client() is None
    finally:
        distributed.shutdown()
