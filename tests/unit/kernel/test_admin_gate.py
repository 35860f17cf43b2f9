"""kernel.admin.AdminGate: where and for whom the admin surfaces are served."""

from __future__ import annotations

import base64

from kernel.admin import AdminGate, presented

TOKEN = "a-long-enough-admin-token"


def _auth(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", value.encode())]


def test_without_a_listener_or_token_everything_passes() -> None:
    assert AdminGate(None, None).check([], on_admin_listener=False) is None


def test_with_a_listener_the_client_port_answers_404() -> None:
    gate = AdminGate("127.0.0.1:9090", None)
    refusal = gate.check([], on_admin_listener=False)
    assert refusal is not None and refusal.status_code == 404 and "9090" not in refusal.message
    assert gate.check([], on_admin_listener=True) is None


def test_the_token_as_bearer_or_basic_password() -> None:
    gate = AdminGate(None, TOKEN)
    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    for ok in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Basic {basic}"):
        assert gate.check(_auth(ok), on_admin_listener=False) is None, ok
    no_colon = base64.b64encode(TOKEN.encode()).decode()
    for bad in ("", f"Bearer {TOKEN}x", TOKEN, "Basic %%%", f"Basic {no_colon}"):
        refusal = gate.check(_auth(bad), on_admin_listener=True)
        assert refusal is not None and refusal.status_code == 401, bad
    assert presented(b"Digest abc") is None
