"""Start the app as `make run` does (serve.py) or bare (`streamlit run app.py`), with a clock inside the server:
`python benchmarks/server_clock.py LOG serve|streamlit [streamlit options]`.

It appends one line per event to LOG, ``<time.monotonic()> rerun`` when a session's rerun request reaches the server
and ``<time.monotonic()> finished`` when a script or fragment run ends there: ui_latency.py reads an interaction's
*server time* off these (the request's arrival to its run's end), which a browser on a busy machine can see late
(it handles each frame as it draws). Benchmark-only: the app itself is not touched.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def install(log_path: str) -> None:
    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.scriptrunner import ScriptRunnerEvent

    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 — open for the server's life, one line per event
    ends = {
        ScriptRunnerEvent.SCRIPT_STOPPED_WITH_SUCCESS,
        ScriptRunnerEvent.SCRIPT_STOPPED_WITH_COMPILE_ERROR,
        ScriptRunnerEvent.FRAGMENT_STOPPED_WITH_SUCCESS,
    }

    def write(what: str) -> None:
        with lock:
            log.write(f"{time.monotonic():.6f} {what}\n")

    handle_backmsg, on_event = AppSession.handle_backmsg, AppSession._on_scriptrunner_event

    def timed_backmsg(self, msg):
        if msg.WhichOneof("type") == "rerun_script":
            write("rerun")
        return handle_backmsg(self, msg)

    def timed_event(self, sender, event, *args, **kwargs):
        if event in ends:
            write("finished")  # on the script's own thread, as its run ends (before the message is queued)
        return on_event(self, sender, event, *args, **kwargs)

    AppSession.handle_backmsg, AppSession._on_scriptrunner_event = timed_backmsg, timed_event


def main(argv: list[str]) -> None:
    log_path, launcher, options = argv[0], argv[1], argv[2:]
    install(log_path)
    sys.path.insert(0, str(ROOT))
    if launcher == "serve":
        import serve

        serve.main(options)
    else:
        from streamlit.web import cli

        sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *options]
        cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
