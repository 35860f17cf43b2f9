"""A forged or tampered connection key gets 80018 and never reaches another connection's state."""

from __future__ import annotations

import pytest
import trio

import continuity
from continuity import ConnectionEvent, ConnectionState
from kernel.protocol import Action
from tests.support.procs import API_KEY, FrontendProcess
from tests.support.raw import raw_connect

pytestmark = pytest.mark.integration


def tamper(key: str) -> str:
    """Flip one character of the key's MAC (its last dot-separated part)."""
    head, _, mac = key.rpartition(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    return f"{head}.{flipped}"


def impersonate(key: str) -> str:
    """Swap in another connection id but keep the original MAC."""
    owner, secondary, _conn_id, epoch, mac = key.split(".")
    return f"{owner}.{secondary}.AAAAAAAAAAAAAAAA.{epoch}.{mac}"


@pytest.mark.parametrize("forge", [tamper, impersonate, lambda key: "not-a-key"])
async def test_forged_resume_key_gets_80018(frontend: FrontendProcess, forge: object) -> None:
    with trio.fail_after(15):
        async with continuity.connect(frontend.url, key=API_KEY) as victim:
            assert victim.key is not None
            ch = victim.channel("private")
            await ch.attach()
            await ch.publish("secret", 1)
            forged = forge(victim.key)  # type: ignore[operator]
            async with raw_connect(frontend.url, key=API_KEY, resume=forged) as raw:
                connected = await raw.recv_action(Action.CONNECTED, Action.ERROR)
                assert connected.action is Action.CONNECTED
                assert connected.error is not None and connected.error.code == 80018
                assert connected.connection_id != victim.id
                details = connected.connection_details or {}
                assert details.get("connectionKey") not in (None, victim.key)
            # The victim's connection is untouched: same id, still publishing with its own serials.
            assert victim.state is ConnectionState.CONNECTED
            serials = await ch.publish("secret", 2)
            assert serials[0] is not None
            assert await victim.ping() >= 0


async def test_forged_recovery_key_gets_80018_and_a_fresh_connection(frontend: FrontendProcess) -> None:
    with trio.fail_after(15):
        async with continuity.connect(frontend.url, key=API_KEY) as victim:
            ch = victim.channel("rk")
            await ch.attach()
            await ch.publish("m", 1)
            key = victim.recovery_key()
            assert key is not None and victim.key is not None
            forged = key.replace(victim.key, tamper(victim.key))
            async with continuity.connect(frontend.url, key=API_KEY, recover=forged) as thief:
                event = next(
                    e
                    for e in thief.event_log
                    if isinstance(e, ConnectionEvent) and e.state is ConnectionState.CONNECTED
                )
                assert not event.resumed and event.reason is not None and event.reason.code == 80018
                assert thief.id != victim.id and thief.key != victim.key
                assert thief.msg_serial == 0  # RTN16l: a failed recover starts a fresh msgSerial
                serials = await thief.channel("rk").publish("m", 2)
                assert serials[0] is not None
            assert victim.state is ConnectionState.CONNECTED
            assert await victim.ping() >= 0


async def test_recover_from_a_recovery_key(frontend: FrontendProcess) -> None:
    """The genuine key recovers the same connection in a new client (RTN16), channels resumed."""
    with trio.fail_after(15):
        async with continuity.connect(frontend.url, key=API_KEY) as publisher:
            pub_ch = publisher.channel("recover")
            async with continuity.connect(frontend.url, key=API_KEY) as conn:
                ch = conn.channel("recover")
                async with ch.subscribe() as sub:
                    await pub_ch.publish("m", 0)
                    await sub.receive()
                key = conn.recovery_key()
                old_id = conn.id
                assert key is not None
                conn.abandon()  # as if the process died: no CLOSE
            await pub_ch.publish("m", 1)
            async with continuity.connect(frontend.url, key=API_KEY, recover=key) as again:
                assert again.id == old_id
                ch = again.channel("recover")
                async with ch.subscribe() as sub:
                    assert ch.last_attach is not None and ch.last_attach.resumed
                    msg = await sub.receive()
                    assert msg.data == 1
