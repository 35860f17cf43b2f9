"""GET /channels/{id}/messages on a real frontend: auth and capability, bad parameters, Link paging.

(The SDK-level behaviour, untilAttach while publishing and ably-python's client, is in
tests/interop/test_ably_js_history.py and test_ably_python_history.py.)
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import trio

from tests.integration.test_persisted import publish_numbered
from tests.support.procs import API_KEY, KEY_NAME, KEY_SECRET, http_get, run_frontend

pytestmark = pytest.mark.integration

READONLY = "app.noh"
READONLY_SECRET = "no-history-secret-0123456789abcdef"


async def get(port: int, path: str, auth: str | None) -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        if auth:
            head += f"Authorization: {auth}\r\n"
        await stream.send_all((head + "\r\n").encode())
        chunks = []
        while chunk := await stream.receive_some(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    top, _, body = raw.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(key.encode()).decode()


async def test_history_endpoint_auth_errors_and_links(tmp_path: Path) -> None:
    keys = {
        KEY_NAME: {"secret": KEY_SECRET, "capability": {"*": ["*"]}},
        READONLY: {"secret": READONLY_SECRET, "capability": {"*": ["subscribe", "publish"]}},
    }
    with trio.fail_after(60):
        async with run_frontend(tmp_path / "fe", keys=keys) as fe:
            published = await publish_numbered(fe.url, "h:links", 5)
            status, _, body = await get(fe.port, "/channels/h:links/messages", None)
            assert status == 401 and json.loads(body)["error"]["code"] == 40100
            status, _, body = await get(
                fe.port, "/channels/h:links/messages", basic(f"{READONLY}:{READONLY_SECRET}")
            )
            assert status == 401 and json.loads(body)["error"]["code"] == 40160
            status, headers, body = await get(fe.port, "/channels/h:links/messages?limit=0", basic(API_KEY))
            assert status == 400 and headers["x-ably-errorcode"] == "40000"
            status, _, body = await get(fe.port, "/channels/h:links/messages?direction=up", basic(API_KEY))
            assert status == 400 and "direction" in json.loads(body)["error"]["message"]
            status, headers, body = await get(fe.port, "/channels/h:links/messages?limit=2", basic(API_KEY))
            assert status == 200
            assert [m["serial"] for m in json.loads(body)] == published[:-3:-1]
            link = headers["link"]
            assert 'rel="first"' in link and 'rel="current"' in link and 'rel="next"' in link
            nxt = link.split(", <./messages?")[-1].split(">;")[0]
            status, _, body = await get(fe.port, f"/channels/h:links/messages?{nxt}", basic(API_KEY))
            assert [m["serial"] for m in json.loads(body)] == published[-3:-5:-1]
            status, text = await http_get("127.0.0.1", fe.port, "/metrics")
    assert 'continuity_errors_total{code="40000"} 2.0' in text.decode()  # refusals are counted
