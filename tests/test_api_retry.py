"""``t2i serve``'s REST calls retry what Prefect's own client retries (429, 502, 503: a SQLite
server answers 503 while its database is busy) and nothing else. A real HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from djepa_t2i.serve.stack import api_request


@pytest.fixture
def server():
    """Answers each request with the next status of ``server.statuses`` (then 200), logging paths."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            srv.seen.append(self.path)
            status = srv.statuses.pop(0) if srv.statuses else 200
            body = json.dumps({"n": len(srv.seen)}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.statuses, srv.seen = [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_busy_server_is_asked_again_until_it_answers(server, monkeypatch):
    waits = []
    monkeypatch.setattr("djepa_t2i.serve.stack.time.sleep", waits.append)
    server.statuses = [503, 502, 429]
    r = api_request("POST", f"http://127.0.0.1:{server.server_port}/flow_runs/", json={})
    assert r.json() == {"n": 4} and server.seen == ["/flow_runs/"] * 4
    assert waits == [1, 2, 4]


def test_other_errors_and_a_server_busy_past_the_last_try_raise(server, monkeypatch):
    monkeypatch.setattr("djepa_t2i.serve.stack.time.sleep", lambda s: None)
    url = f"http://127.0.0.1:{server.server_port}/x"
    server.statuses = [404]
    with pytest.raises(httpx.HTTPStatusError, match="404"):
        api_request("POST", url)
    assert len(server.seen) == 1  # a client error is not retried
    server.statuses = [503] * 3
    with pytest.raises(httpx.HTTPStatusError, match="503"):
        api_request("POST", url, tries=3)
    assert len(server.seen) == 4
