"""Issue 17, points 1-3, with the real ably-js over WebSocket and Comet.

1. An invalid channel name or channel params that are not string -> string fail that channel only
   (ERROR with ``channel``, RTL14): the connection keeps its id and its other channels deliver.
2. ``setOptions`` with new modes re-attaches (RTL16a) and the modes take effect: adding subscribe
   starts delivery, removing it stops it, adding publish is allowed when the capability permits it
   and still refused (40160) when it does not.
3. Invalid channel names are refused with 40010, as Ably does (``:x``, malformed ``[qualifier]``).

Also: ATTACHED echoes the channel params, and ``rewind=<count>`` replays the last messages on a
fresh attach.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import trio

from kernel.placement import rendezvous_order
from tests.interop._harness import API_KEY, make_jwt, node_script, run_frontend
from tests.support.cluster import run_cluster
from tests.support.procs import API_KEY as CLUSTER_API_KEY
from tests.support.procs import KEY_SECRET as CLUSTER_KEY_SECRET

pytestmark = pytest.mark.interop

TRANSPORTS = ["web_socket", "comet"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_channel_errors_stay_in_the_channel_scope(tmp_path: Path, transport: str) -> None:
    with trio.fail_after(60):
        async with run_frontend(tmp_path) as fe:
            config = {"port": fe.port, "key": API_KEY, "transports": [transport], "part": "scope"}
            async with node_script(tmp_path, "channel_scope.mjs", config) as script:
                result = await script.expect("result")
    for name in ("", ":hell", "[meta", "[]name", "[meta]"):
        attempt = result["attempts"][name]
        assert attempt["ok"] is False, name
        assert attempt["error"]["code"] == 40010, (name, attempt)
        assert attempt["state"] == "failed" and attempt["reason"]["code"] == 40010, (name, attempt)
    params = result["attempts"]["params"]
    assert params["ok"] is False and params["state"] == "failed"
    assert params["error"]["code"] == 40000
    assert result["publishInvalid"]["error"]["code"] == 40010
    assert result["echoedParams"] == {"occupancy": "metrics"}  # ATTACHED echoes the params Ably knows
    assert result["modesFromParam"] == ["subscribe"]  # the modes param sets the modes
    assert result["connectionState"] == "connected"
    assert result["sameConnection"] is True
    assert result["liveState"] == "attached"
    assert result["got"] == ["after"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_set_options_modes_take_effect(tmp_path: Path, transport: str) -> None:
    with trio.fail_after(60):
        async with run_frontend(tmp_path) as fe:
            config = {
                "port": fe.port,
                "key": API_KEY,
                "transports": [transport],
                "part": "modes",
                "channel": f"modes:{transport}",
            }
            async with node_script(tmp_path, "channel_scope.mjs", config) as script:
                result = await script.expect("result")
    assert result["modes"] == [["publish"], ["publish", "subscribe"], ["subscribe"], ["publish"]]
    assert result["subscribeWithoutMode"]["error"]["code"] == 90009  # the SDK's own warning
    # Only what was published while the channel had the subscribe mode was delivered.
    assert result["got"] == ["after-adding-subscribe"]
    assert result["publishWithoutMode"]["error"]["code"] == 40160
    assert result["publishWithMode"] == {"ok": True}
    assert result["connectionState"] == "connected"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_set_options_cannot_add_a_mode_the_capability_forbids(tmp_path: Path, transport: str) -> None:
    token = make_jwt(client_id=None, capability={"modes:*": ["subscribe"]})
    with trio.fail_after(60):
        async with run_frontend(tmp_path) as fe:
            config = {
                "port": fe.port,
                "token": token,
                "transports": [transport],
                "part": "denied",
                "channel": "modes:denied",
            }
            async with node_script(tmp_path, "channel_scope.mjs", config) as script:
                result = await script.expect("result")
    assert result["modes"] == ["subscribe"]
    assert result["publish"]["error"]["code"] == 40160
    assert result["connectionState"] == "connected"
    assert result["channelState"] == "attached"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rewind_replays_the_last_messages_on_attach(tmp_path: Path, transport: str) -> None:
    with trio.fail_after(60):
        async with run_frontend(tmp_path) as fe:
            config = {
                "port": fe.port,
                "key": API_KEY,
                "transports": [transport],
                "part": "rewind",
                "channel": f"rewind:{transport}",
            }
            async with node_script(tmp_path, "channel_scope.mjs", config) as script:
                result = await script.expect("result")
    assert result["got"] == ["r2", "r3", "r4"]
    assert result["attached"] == {"resumed": False, "hasBacklog": True, "reason": None}
    assert result["wide"] == ["w1"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reauth_that_narrows_the_capability_fails_the_channels_it_no_longer_allows(
    tmp_path: Path, transport: str
) -> None:
    tokens = [
        make_jwt(client_id=None, capability={"keep:*": ["*"], "lose:*": ["*"]}),
        make_jwt(client_id=None, capability={"keep:*": ["*"]}),
    ]
    with trio.fail_after(60):
        async with run_frontend(tmp_path) as fe:
            config = {"port": fe.port, "transports": [transport], "part": "reauth", "tokens": tokens}
            async with node_script(tmp_path, "channel_scope.mjs", config) as script:
                result = await script.expect("result")
    assert result["sameConnection"] is True and result["connectionState"] == "connected"
    assert result["kept"] == "attached"
    assert result["lost"] == "failed" and result["failed"]["code"] == 40160


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reauth_that_widens_the_capability_grants_the_modes_asked_at_attach(
    tmp_path: Path, transport: str
) -> None:
    # The channel is attached with the default modes (publish among them) under a subscribe-only
    # capability; a reauth that allows publish grants it, the next that forbids it drops it again.
    narrow = {"up:*": ["subscribe"]}
    tokens = [
        make_jwt(client_id=None, capability=narrow),
        make_jwt(client_id=None, capability={"up:*": ["subscribe", "publish"]}),
        make_jwt(client_id=None, capability=narrow),
    ]
    with trio.fail_after(60):
        async with run_frontend(tmp_path) as fe:
            config = {
                "port": fe.port,
                "transports": [transport],
                "part": "widen",
                "tokens": tokens,
                "channel": f"up:{transport}",
            }
            async with node_script(tmp_path, "channel_scope.mjs", config) as script:
                result = await script.expect("result")
    assert result["before"]["error"]["code"] == 40160
    assert result["widened"] == {"ok": True}
    assert result["narrowed"]["error"]["code"] == 40160
    assert result["got"] == ["widened"]  # subscribe held throughout; the refused publishes never delivered
    assert result["sameConnection"] is True and result["connectionState"] == "connected"
    assert result["channelState"] == "attached"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_updates_deletes_appends_and_derived_channels_are_refused_plainly(
    tmp_path: Path, transport: str
) -> None:
    # Not supported (README, compatibility): each is refused with an error that says so, instead of
    # an update delivered as a new message under a new serial, or a derived channel that attaches
    # a separate channel of its literal name and never receives anything.
    with trio.fail_after(60):
        async with run_frontend(tmp_path) as fe:
            config = {
                "port": fe.port,
                "key": API_KEY,
                "transports": [transport],
                "part": "unsupported",
                "channel": f"mutable:{transport}",
            }
            async with node_script(tmp_path, "channel_scope.mjs", config) as script:
                result = await script.expect("result")
    for op, action in (
        ("updateMessage", "message.update"),
        ("deleteMessage", "message.delete"),
        ("appendMessage", "message.append"),
    ):
        error = result["operations"][op]["error"]
        assert error["code"] == 40000 and "not supported" in error["message"], (op, error)
        assert error["message"].startswith(action), (op, error)
    assert result["derivedAttach"]["error"]["code"] == 40000
    assert "derived channels" in result["derivedAttach"]["error"]["message"]
    assert result["derivedState"] == "failed"
    assert result["got"] == [
        {"action": "message.create", "data": "Hello"},
        {"action": "message.create", "data": "end"},
    ]
    assert result["sameConnection"] is True and result["connectionState"] == "connected"
    assert result["channelState"] == "attached"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_subscribe_granted_again_by_a_reauth_delivers_from_a_remote_home(
    tmp_path: Path, transport: str
) -> None:
    # The client is on fe-a1 and every channel's home is fe-b1: dropping subscribe (the last local
    # subscriber gone) stops fe-a1's stream from the home, so granting it again must restart it.
    nodes = ("fe-a1", "fe-b1")
    names = (f"re:{transport}:{i}" for i in range(40))
    channels = [n for n in names if rendezvous_order(n, nodes)[0] == "fe-b1"][:3]
    full = {"re:*": ["subscribe", "publish"]}
    with warnings.catch_warnings():  # the test cluster's key secret is short: fine for a test
        warnings.simplefilter("ignore")
        tokens = [
            make_jwt(client_id=None, capability=cap, secret=CLUSTER_KEY_SECRET)
            for cap in (full, {"re:*": ["publish"]}, full)
        ]
    with trio.fail_after(90):
        async with run_cluster(tmp_path / "cluster", frontends=(("fe-a1", "a"), ("fe-b1", "b"))) as cluster:
            config = {
                "port": cluster.nodes["fe-a1"].port,
                "key": CLUSTER_API_KEY,
                "transports": [transport],
                "part": "resubscribe",
                "tokens": tokens,
                "channels": channels,
            }
            async with node_script(tmp_path, "channel_scope.mjs", config) as script:
                result = await script.expect("result")
    assert len(channels) == 3
    assert result["got"] == {name: ["a", "c"] for name in channels}
    assert result["states"] == ["attached"] * 3 and result["sameConnection"] is True
