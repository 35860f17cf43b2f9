"""The pure SWIM + Lifeguard state machine of one member. No trio, no socket, no clock.

Theory of operation
-------------------
Inputs are `receive(now, src, data, stream=...)`, `tick(now)`, `join`, `update_metadata` and `leave`;
outputs are drained from `outgoing()` (datagrams and push-pull stream messages) and `events()`, and
`next_deadline()` says when `tick` is next due. Every timer is a deadline stored in this object, and all
randomness comes from the injected `random.Random`, so a run is a pure function of its inputs.

Failure detection (SWIM). Each probe interval the member pings the next member of a shuffled
round-robin list (every live member is probed within two passes; a new suspect's zone-mates first,
see `probe_order`). No ack within the probe timeout: it
asks `indirect_checks` random members to ping the target for it (ping-req). No ack by the end of the
interval: the target becomes *suspect*. A suspicion that runs out turns into *dead*.

Incarnations. Only a member raises its own incarnation. A rumour that the local member is suspect or
dead (at its incarnation or later) is refuted by raising the incarnation and broadcasting alive; the
whole ordering of rumours is `members.precedence`, one function.

Dissemination. Every accepted rumour goes into a queue keyed by member (newer replaces older) and is
piggybacked on pings, acks and periodic gossip rounds until it has been sent
`retransmit_limit(mult, N)` times. Every `push_pull_interval` the full state is exchanged with one
random member over a stream (TCP); a remote dead entry only makes us *suspect*, so that a merge never
kills members outright. Joining is a push-pull with the seeds; every `reconnect_interval` a seed not
known alive or a recently dead member is push-pulled again, so a healed partition re-merges. A dead
rumour from another member is a suspicion for a refutation's trip unless we suspected it that long.

Lifeguard (when `config.lifeguard`). (1) Local health: a score 0..max-1 rises when our probes fail
without the nacks we expected, or when we must refute, and falls on each successful probe; probe
interval and timeout are scaled by score+1, so a slow member slows down instead of accusing others.
(2) A suspicion starts at `suspicion_max` and shrinks toward `suspicion_min` with independent
confirmations (`members.Suspicion`). (3) Indirect probers send a nack when the target does not answer,
which tells us our own network is fine. (4) Buddy system: a ping to a suspect member carries the
suspicion, so the member learns of it (and refutes) at its first probe, even after the suspicion's
rumours have run out of retransmissions.
"""

from __future__ import annotations

import random

from . import formulas
from .config import GossipConfig
from .errors import RemoteProtocolError
from .members import (
    EventKind,
    MemberEvent,
    MemberInfo,
    MemberRecord,
    RumourQueue,
    Suspicion,
    Verdict,
    precedence,
)
from .probe_order import ProbeOrder, zone_mates
from .tallies import Counters, Outgoing, Probe, Relay
from .wire import (
    ARRAY_HEADER_BYTES,
    ENVELOPE_OVERHEAD,
    MAX_DATAGRAM_BYTES,
    MAX_STREAM_BYTES,
    Ack,
    Address,
    Alive,
    Dead,
    IndirectPing,
    Keyring,
    MemberState,
    Message,
    Metadata,
    Nack,
    Ping,
    PushPull,
    StateRecord,
    Suspect,
    decode_packet,
    encode_body,
    encode_message,
    encode_metadata,
    seal,
)

_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)

__all__ = ["Counters", "Outgoing", "SwimCore"]


class SwimCore:
    """One member's SWIM + Lifeguard state. See the module docstring for the theory of operation."""

    def __init__(
        self,
        config: GossipConfig,
        *,
        name: str,
        address: Address,
        now: float,
        rng: random.Random,
        metadata: Metadata | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.address = address
        self.keyring = keyring if keyring is not None else Keyring()
        self.counters = Counters()
        self.last_drop: RemoteProtocolError | None = None  # why the last dropped packet was dropped
        self._rng = rng
        meta = metadata if metadata is not None else Metadata()
        encode_metadata(meta)  # raises LocalProtocolError if too big
        self._self = MemberRecord(
            name=name, address=address, incarnation=0, state=MemberState.ALIVE, metadata=meta, since=now
        )
        self._members: dict[str, MemberRecord] = {name: self._self}
        self._awareness = 0
        self._seq = 0
        self._probe: Probe | None = None
        self._probes = ProbeOrder(rng, name)
        self._relays: dict[int, Relay] = {}
        self._suspicions: dict[str, Suspicion] = {}
        self._queue = RumourQueue()
        self._out: list[Outgoing] = []
        self._events: list[MemberEvent] = []
        self._seeds: list[Address] = []
        self._left = False
        self._next_probe_at = now + rng.uniform(0, config.probe_interval)
        self._next_gossip_at = now + rng.uniform(0, config.gossip_interval)
        self._next_push_pull_at = now + rng.uniform(0.5, 1.0) * config.push_pull_interval
        self._next_reconnect_at = now + rng.uniform(0.5, 1.0) * config.reconnect_interval
        self._queue.enqueue(name, encode_message(self._alive_message()))

    # ----------------------------------------------------------------------------------- public API

    @property
    def incarnation(self) -> int:
        return self._self.incarnation

    @property
    def awareness(self) -> int:
        """Return the Lifeguard local health score (0 = healthy)."""
        return self._awareness

    @property
    def has_left(self) -> bool:
        return self._left

    def members(self) -> list[MemberInfo]:
        """Return a snapshot of every known member, the local one included, dead and left ones too."""
        return [r.snapshot() for r in self._members.values()]

    def member(self, name: str) -> MemberInfo | None:
        rec = self._members.get(name)
        return None if rec is None else rec.snapshot()

    def live_count(self) -> int:
        """Return the number of alive or suspect members, the local one included (N in the formulas)."""
        return sum(1 for r in self._members.values() if r.state in _LIVE)

    def outgoing(self) -> list[Outgoing]:
        """Return and forget what must be sent."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[MemberEvent]:
        """Return and forget the membership changes seen since the last call."""
        ev, self._events = self._events, []
        return ev

    def pending_rumours(self) -> int:
        """Return how many rumours are still queued for piggybacking."""
        return len(self._queue)

    def next_deadline(self) -> float:
        """Return the local time at which `tick` must next be called."""
        d = min(self._next_probe_at, self._next_gossip_at, self._next_push_pull_at, self._next_reconnect_at)
        p = self._probe
        if p is not None and not p.acked and not p.indirect_sent:
            d = min(d, p.timeout_at)
        for r in self._relays.values():
            d = min(d, r.deadline)
        for s in self._suspicions.values():
            last_call = not s.last_call and self.config.lifeguard
            d = min(d, s.deadline - self.config.probe_interval if last_call else s.deadline)
        return d

    def join(self, now: float, seeds: list[Address]) -> None:
        """Remember `seeds` (re-contacted while not known alive) and push-pull with each of them now."""
        for seed in seeds:
            if seed not in self._seeds and seed != self.address:
                self._seeds.append(seed)
        for seed in self._seeds:
            self._send_push_pull(seed, join=True, reply=False)

    def update_metadata(self, now: float, metadata: Metadata) -> None:
        """Publish new metadata: raise our incarnation and broadcast alive.

        Raises `LocalProtocolError` if it encodes to more than `MAX_METADATA_BYTES`.
        """
        encode_metadata(metadata)
        self._self.metadata = metadata
        self._self.incarnation += 1
        self._queue.enqueue(self.name, encode_message(self._alive_message()))

    def leave(self, now: float) -> None:
        """Leave gracefully: broadcast that we left, stop probing and ignore rumours about ourselves."""
        if self._left:
            return
        self._left = True
        self._self.state = MemberState.LEFT
        self._self.since = now
        self._probe = None
        dead = Dead(name=self.name, incarnation=self._self.incarnation, by=self.name)
        self._queue.enqueue(self.name, encode_message(dead))
        self._gossip(now)

    # ------------------------------------------------------------------------------------- receive

    def receive(self, now: float, src: Address, data: bytes, *, stream: bool = False) -> None:
        """Process one datagram (or one stream message) from `src`.

        Bad input never raises: it is counted in `counters` and dropped (`last_drop` tells why).
        """
        self.counters.bytes_received += len(data)
        if stream:
            self.counters.streams_received += 1
        else:
            self.counters.packets_received += 1
        try:
            messages = decode_packet(
                self.keyring, data, max_bytes=MAX_STREAM_BYTES if stream else MAX_DATAGRAM_BYTES
            )
        except RemoteProtocolError as exc:
            name = f"dropped_{exc.reason}"
            setattr(self.counters, name, getattr(self.counters, name) + 1)
            self.last_drop = exc
            return
        # Rumours before pings: a ping carrying a suspicion of us is acked with our refutation on it.
        for msg in sorted(messages, key=lambda m: isinstance(m, Ping)):
            self._dispatch(now, src, msg)

    def _dispatch(self, now: float, src: Address, msg: Message) -> None:
        match msg:
            case Ping():
                self.handle_ping(now, src, msg)
            case IndirectPing():
                self.handle_indirect_ping(now, src, msg)
            case Ack():
                self.handle_ack(now, msg)
            case Nack():
                self.handle_nack(msg)
            case Alive():
                self.on_alive(now, msg)
            case Suspect():
                self.on_suspect(now, msg)
            case Dead():
                self.on_dead(now, msg)
            case PushPull():
                self.handle_push_pull(now, msg)

    def handle_ping(self, now: float, src: Address, msg: Ping) -> None:
        if msg.target != self.name:
            return  # meant for whoever lived at this address before us
        self._send(src, [encode_message(Ack(seq=msg.seq))])

    def handle_indirect_ping(self, now: float, src: Address, msg: IndirectPing) -> None:
        seq = self._next_seq()
        self._relays[seq] = Relay(
            requester=src, their_seq=msg.seq, nack=msg.nack, deadline=now + self.config.probe_timeout
        )
        self._send(msg.target_address, [encode_message(Ping(seq=seq, target=msg.target))])

    def handle_ack(self, now: float, msg: Ack) -> None:
        p = self._probe
        if p is not None and p.seq == msg.seq and not p.acked:
            p.acked = True
            self._apply_awareness(-1)
            return
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            self._send(relay.requester, [encode_message(Ack(seq=relay.their_seq))])

    def handle_nack(self, msg: Nack) -> None:
        p = self._probe
        if p is not None and p.seq == msg.seq:
            p.nacks += 1

    def handle_push_pull(self, now: float, msg: PushPull) -> None:
        """Merge a remote full state, then answer with ours unless this was the answer."""
        for r in msg.members:
            if r.state == MemberState.ALIVE:
                self.on_alive(
                    now, Alive(name=r.name, address=r.address, incarnation=r.incarnation, metadata=r.metadata)
                )
            elif r.state == MemberState.LEFT:
                self.on_dead(now, Dead(name=r.name, incarnation=r.incarnation, by=r.name))
            else:  # a remote suspect or dead only makes us suspect (memberlist's mergeState)
                self.on_suspect(now, Suspect(name=r.name, incarnation=r.incarnation, by=msg.source))
        if not msg.reply:
            self._send_push_pull(msg.source_address, join=False, reply=True)

    # --------------------------------------------------------------------------------------- rumours

    def on_alive(self, now: float, msg: Alive) -> None:
        cur = self._members.get(msg.name)
        verdict = precedence(cur, msg, local_name=self.name)
        if verdict == Verdict.REFUTE:
            self._refute(msg.incarnation)
            return
        if verdict != Verdict.APPLY:
            return
        if cur is None:
            cur = MemberRecord(
                name=msg.name,
                address=msg.address,
                incarnation=msg.incarnation,
                state=MemberState.ALIVE,
                metadata=msg.metadata,
                since=now,
            )
            self._members[msg.name] = cur
            self._probes.add(msg.name)
            self._emit(EventKind.JOINED, cur, now)
        else:
            old_state, changed = cur.state, (cur.metadata != msg.metadata or cur.address != msg.address)
            cur.incarnation, cur.address, cur.metadata = msg.incarnation, msg.address, msg.metadata
            self._suspicions.pop(msg.name, None)
            if old_state != MemberState.ALIVE:
                cur.state, cur.since = MemberState.ALIVE, now
                if old_state == MemberState.SUSPECT:
                    self._emit(EventKind.ALIVE, cur, now)
                    if changed:
                        self._emit(EventKind.UPDATED, cur, now)
                else:
                    self._probes.add(msg.name)
                    self._emit(EventKind.JOINED, cur, now)
            elif changed:
                self._emit(EventKind.UPDATED, cur, now)
        self._queue.enqueue(msg.name, encode_message(msg))

    def on_suspect(self, now: float, msg: Suspect) -> None:
        cur = self._members.get(msg.name)
        verdict = precedence(cur, msg, local_name=self.name)
        if verdict == Verdict.REFUTE:
            self._refute(msg.incarnation)
        elif msg.name == self.name and not self._left:  # old news of us: our alive again (on the ack)
            self._queue.enqueue(self.name, encode_message(self._alive_message()))
        elif verdict == Verdict.CONFIRM:
            s = self._suspicions.get(msg.name)
            if s is not None and self.config.lifeguard and s.confirm(msg.by):
                self._queue.enqueue(msg.name, encode_message(msg))
        elif verdict == Verdict.APPLY:
            assert cur is not None
            cur.state, cur.incarnation, cur.since = MemberState.SUSPECT, msg.incarnation, now
            n = self.live_count()
            minimum = self.config.suspicion_min(n)
            if self.config.lifeguard:
                k = formulas.suspicion_confirmations_needed(self.config.suspicion_mult, n)
                maximum = self.config.suspicion_max_mult * minimum
            else:
                k, maximum = 0, minimum
            self._suspicions[msg.name] = Suspicion(
                start=now, first=msg.by, k=k, minimum=minimum, maximum=maximum
            )
            self._emit(EventKind.SUSPECT, cur, now)
            self._queue.enqueue(msg.name, encode_message(msg))
            self._probes.first(zone_mates(self._members, cur, self.name))  # probe_order.py

    def on_dead(self, now: float, msg: Dead) -> None:
        cur = self._members.get(msg.name)
        verdict = precedence(cur, msg, local_name=self.name)
        if verdict == Verdict.REFUTE:
            self._refute(msg.incarnation)
        elif msg.name == self.name and not self._left:  # old news of us: our alive again (on the ack)
            self._queue.enqueue(self.name, encode_message(self._alive_message()))
        elif verdict == Verdict.APPLY:
            assert cur is not None
            left = msg.by == msg.name
            suspicion = self._suspicions.get(msg.name)
            fresh = suspicion is None or now - suspicion.start < self._refute_window()
            if not left and msg.by != self.name and fresh:
                # Only a suspicion, capped at a refutation's round trip (see the module docstring;
                # chaos seed 25705, t 88.7 s: fe-a1 dead for 80 ms at fe-a2 and fe-b1 after a heal).
                self.on_suspect(now, Suspect(name=msg.name, incarnation=msg.incarnation, by=msg.by))
                if (pending := self._suspicions.get(msg.name)) is not None:
                    pending.verdict(now + self._refute_window())
                return
            cur.state = MemberState.LEFT if left else MemberState.DEAD
            cur.incarnation, cur.since = msg.incarnation, now
            self._suspicions.pop(msg.name, None)
            self._emit(EventKind.LEFT if left else EventKind.DEAD, cur, now)
            self._queue.enqueue(msg.name, encode_message(msg))

    def _last_call(self, name: str) -> None:
        """Ping a suspect with the suspicion one probe interval before ours runs out (outside the probe
        rounds): the ack carries its refutation even if the refutation's rumours missed us."""
        rec = self._members[name]
        ping = Ping(seq=self._next_seq(), target=name)
        suspect = Suspect(name=name, incarnation=rec.incarnation, by=self.name)
        self._send(rec.address, [encode_message(ping), encode_message(suspect)])

    def _refute_window(self) -> float:  # how long we suspect one before another's verdict applies
        return 2 * self._scaled(self.config.probe_interval)

    def _refute(self, incarnation: int) -> None:
        if self._left:
            return
        self._self.incarnation = max(self._self.incarnation, incarnation) + 1
        self.counters.refutations += 1
        self._apply_awareness(+1)
        self._queue.enqueue(self.name, encode_message(self._alive_message()))

    # ------------------------------------------------------------------------------------------ tick

    def tick(self, now: float) -> None:
        """Fire every timer that is due at `now`."""
        for seq in [s for s, r in self._relays.items() if r.deadline <= now]:
            relay = self._relays.pop(seq)
            if relay.nack:
                self._send(relay.requester, [encode_message(Nack(seq=relay.their_seq))])
        for name, s in self._suspicions.items():
            if self.config.lifeguard and s.last_call_due(now, self.config.probe_interval):
                self._last_call(name)
        for name in [n for n, s in self._suspicions.items() if s.deadline <= now]:
            del self._suspicions[name]
            rec = self._members[name]
            self.on_dead(now, Dead(name=name, incarnation=rec.incarnation, by=self.name))
        p = self._probe
        if p is not None and not p.acked and not p.indirect_sent and p.timeout_at <= now:
            self._send_indirect(now, p)
        if self._next_probe_at <= now:
            if p is not None and not p.acked:
                self._probe_failed(now, p)
            self._probe = None
            if not self._left:
                self._start_probe(now)
            else:
                self._next_probe_at = now + self.config.probe_interval
        if self._next_gossip_at <= now:
            self._gossip(now)
            self._next_gossip_at += self.config.gossip_interval
            if self._next_gossip_at <= now:  # we were stalled: do not replay missed rounds
                self._next_gossip_at = now + self.config.gossip_interval
        if self._next_push_pull_at <= now:
            self._push_pull_random(now)
            interval = formulas.push_pull_scale(self.config.push_pull_interval, self.live_count())
            self._next_push_pull_at = now + interval
        if self._next_reconnect_at <= now:
            self._reconnect(now)
            self._reap(now)
            self._next_reconnect_at = now + self.config.reconnect_interval

    # ----------------------------------------------------------------------------------------- probe

    def _scaled(self, timeout: float) -> float:
        return formulas.scale_timeout(timeout, self._awareness)

    def _apply_awareness(self, delta: int) -> None:
        if self.config.lifeguard:
            top = self.config.awareness_max_multiplier - 1
            self._awareness = min(top, max(0, self._awareness + delta))

    def _start_probe(self, now: float) -> None:
        self._next_probe_at = now + self._scaled(self.config.probe_interval)
        target = self._probes.next(self._members)
        if target is None:
            return
        rec = self._members[target]
        seq = self._next_seq()
        self._probe = Probe(target=target, seq=seq, timeout_at=now + self._scaled(self.config.probe_timeout))
        self.counters.probes += 1
        messages = [encode_message(Ping(seq=seq, target=target))]
        if rec.state == MemberState.SUSPECT and self.config.lifeguard:  # buddy system: tell it at once
            messages.append(encode_message(Suspect(name=target, incarnation=rec.incarnation, by=self.name)))
        self._send(rec.address, messages)

    def _send_indirect(self, now: float, p: Probe) -> None:
        p.indirect_sent = True
        target = self._members.get(p.target)
        if target is None:
            return
        peers = [
            r
            for r in self._members.values()
            if r.state == MemberState.ALIVE and r.name not in (self.name, p.target)
        ]
        chosen = self._rng.sample(peers, min(self.config.indirect_checks, len(peers)))
        nack = self.config.lifeguard
        p.expected_nacks = len(chosen) if nack else 0
        for peer in chosen:
            msg = IndirectPing(seq=p.seq, target=p.target, target_address=target.address, nack=nack)
            self._send(peer.address, [encode_message(msg)])

    def _probe_failed(self, now: float, p: Probe) -> None:
        self.counters.probe_failures += 1
        if p.expected_nacks > 0:
            self._apply_awareness(max(0, p.expected_nacks - p.nacks))
        else:
            self._apply_awareness(+1)
        rec = self._members.get(p.target)
        if rec is not None and rec.state in _LIVE:
            self.on_suspect(now, Suspect(name=p.target, incarnation=rec.incarnation, by=self.name))

    # ------------------------------------------------------------------------- gossip and push-pull

    def _gossip(self, now: float) -> None:
        if not self._queue:
            return
        horizon = now - self.config.gossip_to_dead_time
        candidates = [
            r
            for r in self._members.values()
            if r.name != self.name
            and (r.state in _LIVE or (r.state == MemberState.DEAD and r.since >= horizon))
        ]
        if not candidates:
            return
        for target in self._rng.sample(candidates, min(self.config.gossip_nodes, len(candidates))):
            if not self._send(target.address, [], require_rumours=True):
                break

    def _push_pull_random(self, now: float) -> None:
        peers = [r for r in self._members.values() if r.state == MemberState.ALIVE and r.name != self.name]
        if peers and not self._left:
            self._send_push_pull(self._rng.choice(peers).address, join=False, reply=False)

    def _reconnect(self, now: float) -> None:
        """Push-pull with one seed not known alive or one recently dead member (partition healing)."""
        if self._left:
            return
        live_addresses = {r.address for r in self._members.values() if r.state in _LIVE}
        candidates = [s for s in self._seeds if s not in live_addresses]
        candidates += [r.address for r in self._members.values() if r.state == MemberState.DEAD]
        if candidates:
            self._send_push_pull(self._rng.choice(candidates), join=False, reply=False)

    def _reap(self, now: float) -> None:
        horizon = now - self.config.dead_retention
        for name in [
            n
            for n, r in self._members.items()
            if r.state in (MemberState.DEAD, MemberState.LEFT) and r.since < horizon and n != self.name
        ]:
            del self._members[name]

    def _send_push_pull(self, dst: Address, *, join: bool, reply: bool) -> None:
        records = tuple(
            StateRecord(
                name=r.name, address=r.address, incarnation=r.incarnation, state=r.state, metadata=r.metadata
            )
            for r in self._members.values()
        )
        msg = PushPull(source=self.name, source_address=self.address, join=join, reply=reply, members=records)
        data = seal(self.keyring, encode_body([encode_message(msg)]))
        self.counters.streams_sent += 1
        self.counters.bytes_sent += len(data)
        self._out.append(Outgoing(dst=dst, data=data, stream=True))

    # -------------------------------------------------------------------------------------- helpers

    def _alive_message(self) -> Alive:
        s = self._self
        return Alive(name=s.name, address=s.address, incarnation=s.incarnation, metadata=s.metadata)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _emit(self, kind: EventKind, rec: MemberRecord, now: float) -> None:
        self._events.append(MemberEvent(kind=kind, member=rec.snapshot(), at=now))

    def _send(self, dst: Address, messages: list[bytes], *, require_rumours: bool = False) -> bool:
        """Queue a datagram of `messages` filled up with piggybacked rumours; return False if empty."""
        budget = MAX_DATAGRAM_BYTES - ENVELOPE_OVERHEAD - ARRAY_HEADER_BYTES - sum(map(len, messages))
        limit = formulas.retransmit_limit(self.config.retransmit_mult, self.live_count())
        rumours = self._queue.take(budget, limit)
        if require_rumours and not rumours:
            return False
        data = seal(self.keyring, encode_body(messages + rumours))
        self.counters.packets_sent += 1
        self.counters.bytes_sent += len(data)
        self._out.append(Outgoing(dst=dst, data=data))
        return True
