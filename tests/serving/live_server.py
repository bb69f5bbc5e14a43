"""A real model server for the tests: uvicorn on a free loopback port in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from pipelines.serving.model_server import server_config


@contextmanager
def live_server(app: Starlette) -> Iterator[str]:
    """Serve `app` with the CLI's uvicorn settings until the block ends; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the socket is handed over bound, so no other process can take the port
    port = sock.getsockname()[1]
    config = server_config(app, "127.0.0.1", port)
    config.access_log = False
    server = uvicorn.Server(config)  # off the main thread uvicorn installs no signal handlers
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="model-server", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "the model server to start", alive=thread.is_alive)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 15.0,
               alive: Callable[[], bool] = lambda: True) -> None:
    """Poll `condition` every 20 ms; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if not alive() or time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
