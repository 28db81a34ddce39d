"""Schemathesis hooks for the contract run (tests/tests/api/contract.rs).

The run calls every operation, `POST /api/v1/auth/logout` among them, which ends the session the
run is using. So the run logs in itself, as ATIENDE_EMAIL with ATIENDE_PASSWORD, and logs in again
after each logout that ended its session, instead of carrying one fixed token.
"""

import os
import threading

import requests
import schemathesis

_lock = threading.Lock()
_token = None


def _login():
    response = requests.post(
        os.environ["ATIENDE_BASE_URL"] + "/api/v1/auth/login",
        json={"email": os.environ["ATIENDE_EMAIL"], "password": os.environ["ATIENDE_PASSWORD"]},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["token"]


# Cached here rather than by Schemathesis, so that a logout can drop the token at once.
@schemathesis.auth(refresh_interval=None)
class Session:
    def get(self, case, ctx):
        global _token
        with _lock:
            if _token is None:
                _token = _login()
            return _token

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def after_call(context, case, response):
    global _token
    if case.path == "/api/v1/auth/logout" and response.status_code == 204:
        sent = response.request.headers.get("Authorization", "")
        with _lock:
            if _token is not None and sent == f"Bearer {_token}":
                _token = None
