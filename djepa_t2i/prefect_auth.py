"""API authentication for the local Prefect server (issue #12 item 8).

A server started with ``PREFECT_SERVER_API_AUTH_STRING`` answers 401 to every API request that
lacks the matching HTTP Basic credential (its health probes excepted); Prefect's clients (the
CLI, workers, flow runs) send ``PREFECT_API_AUTH_STRING``. The secret is generated on the first
start and kept under the state folder (mode 0600), so a restarted server and every client started
later read the same one; nothing is printed or logged.

``djepa_t2i/serve/stack.py`` calls :func:`server_env` once with the state folder and puts the
result in the environment of ``prefect server start`` and of every Prefect client it starts.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE = "api-auth-string"  # under <state>/prefect/
USER = "t2i"


def auth_string(state_dir: str | os.PathLike) -> str:
    """The server's ``user:password`` credential: read, or created on the first call. Creation
    is atomic (written to a private temporary file, then hard-linked into place), so two first
    starts agree on one secret and no reader sees half a file."""
    path = Path(state_dir) / "prefect" / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{USER}:{secrets.token_urlsafe(32)}\n")
        try:
            os.link(tmp, path)
        except FileExistsError:  # another first start won: use its secret
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def server_env(state_dir: str | os.PathLike) -> dict[str, str]:
    """The environment that turns authentication on for the server and configures its clients."""
    s = auth_string(state_dir)
    return {"PREFECT_SERVER_API_AUTH_STRING": s, "PREFECT_API_AUTH_STRING": s}
