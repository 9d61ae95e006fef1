"""The local Prefect server's API authentication: one secret per state folder, generated once,
private; a real Prefect API app refuses requests without it and accepts its clients' credential."""
import base64
import stat

from djepa_t2i.prefect_auth import SECRET_FILE, USER, auth_string, server_env
from djepa_t2i.serve.stack import stack_env


def test_secret_generated_once_private_and_stable(tmp_path):
    s = auth_string(tmp_path)
    user, password = s.split(":", 1)
    assert user == USER and len(password) >= 40  # 32 random bytes, url-safe base64
    path = tmp_path / "prefect" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth_string(tmp_path) == s  # a restart reads the same secret
    assert auth_string(tmp_path / "other") != s  # another state folder, another secret
    assert server_env(tmp_path) == {"PREFECT_SERVER_API_AUTH_STRING": s, "PREFECT_API_AUTH_STRING": s}
    assert [p.name for p in path.parent.iterdir()] == [SECRET_FILE]  # no temporary file left


def test_prefect_api_refuses_requests_without_the_secret(tmp_path):
    from prefect.server.api.server import create_api_app
    from prefect.settings import PREFECT_SERVER_API_AUTH_STRING, temporary_settings
    from starlette.testclient import TestClient
    s = auth_string(tmp_path)
    with temporary_settings({PREFECT_SERVER_API_AUTH_STRING: s}):
        app = create_api_app()
    client = TestClient(app)
    basic = lambda cred: {"Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}  # noqa: E731
    assert client.get("/admin/version").status_code == 401
    assert client.get("/admin/version", headers=basic(USER + ":wrong")).status_code == 401
    r = client.get("/admin/version", headers=basic(s))
    assert r.status_code == 200 and r.json()
    assert client.get("/health").status_code == 200  # health probes stay open


def test_serve_stack_env_carries_the_secret_of_its_state_folder(tmp_path):
    """Every process ``t2i serve`` starts (server and clients) gets the state folder's secret."""
    env = stack_env("http://127.0.0.1:1/api", tmp_path / "home", state=tmp_path / "state")
    s = auth_string(tmp_path / "state")
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == s
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:1/api"
