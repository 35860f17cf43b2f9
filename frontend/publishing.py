"""Publishing from this node's clients: numbering at the channel's home, retries, honest NACKs.

``ChannelService`` (``channels.py``) builds one ``Publisher``, which holds this node's publishes in
flight (their attempts, and the order of each connection's on each channel), and hands it every
publish; it reaches the service through ``PublishHost`` and a home held here through
``PublishHomeSide``. A publish is sent to its channel's home (or appended here when this node is
home) and retried every ``RETRY_MS`` while its outcome is NOT_NUMBERED, until the operation
deadline, then NACKed; an attempt whose outcome is UNKNOWN (it may have been numbered) keeps it
retrying, deduplicated by the home, and it is never NACKed then. Publisher order: while an earlier
publish of the same connection on the channel is unresolved, a publish names it in ``after``. Pure:
``now_ms`` comes in; peers are reached through ``Bus``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from frontend import peerops as O
from frontend.home_quorum import no_quorum
from frontend.home_records import RPC_TIMEOUT_S, Home, Retries, publish_window, unavailable
from kernel.errors import ErrorCode, ErrorInfo

if TYPE_CHECKING:
    from frontend.bus import Bus
    from frontend.config import FrontendConfig
    from frontend.idempotency import PublishDone
    from frontend.metrics import Metrics
    from kernel.quorum import QuorumState

RETRY_MS = 100  # how soon a failed remote operation is retried
# How often a publish whose outcome is unknown is retried while this side knows it holds no majority
# of zones (no home here can learn its outcome: it waits for the majority, or for the other zone).
MINORITY_RETRY_MS = 1_000


@dataclass(slots=True)
class PublishAttempt:
    """One publish across its retries: the deadline for a NACK, and whether an attempt's outcome
    is unknown (then retries go on, deduplicated, until ``final``)."""

    deadline: int
    final: int
    uncertain: bool = False
    # What the last attempt ran into, for the NACK's message (formatted only if one is sent).
    why: str | Callable[[], str] = ""
    # An earlier publish of the connection on the channel was refused: this one is refused with it
    # (never numbered after a re-send of the earlier one: publisher order).
    refused: ErrorInfo | None = None
    in_flight: int = 0  # attempts sent and not answered (a re-send's chain shares this record)
    # A publish of a connection taken over from a copy: an earlier owner may have it in flight, so a
    # 50350 is retried until the deadline rather than sent at once (``Session.saw_publish``).
    patient: bool = False

    def early_refusal_ok(self) -> bool:
        """No other attempt may number it: a refusal may be sent before the deadline."""
        return not (self.uncertain or self.in_flight or self.patient)


def _text(why: str | Callable[[], str]) -> str:
    return why() if callable(why) else why


class PublishHost(Protocol):
    """What ``Publisher`` reads and calls on its host (``ChannelService``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def config(self) -> FrontendConfig: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def bus(self) -> Bus | None: ...

    @property
    def homes(self) -> dict[str, Home]: ...

    now_ms: int  # the service's clock: a publish moves it, as every entry point does

    def home_of(self, channel: str) -> str: ...

    def quorum(self, now_ms: int | None = None) -> QuorumState: ...

    def minority_known(self, now_ms: int | None = None) -> bool: ...

    def _retry(
        self, now_ms: int, deadline_ms: int | None, again: Callable[[int], None], give_up: Callable[[], None]
    ) -> None: ...


class PublishHomeSide(Protocol):
    """What ``Publisher`` calls on the home side (``homes.HomeSide``) when this node is home."""

    def with_home(self, now_ms: int, channel: str, then: Callable[[bool], None]) -> None: ...

    def append(
        self, now_ms: int, pub: O.Publish, done: PublishDone, abandon: Callable[[], None]
    ) -> None: ...


class Publisher:
    """This node's clients' publishes, from the first attempt to their ACK or NACK."""

    def __init__(self, host: PublishHost, retries: Retries, home_side: PublishHomeSide) -> None:
        self.host = host
        self.home_side = home_side
        self._retries = retries  # shared with the host: due retries run on its tick
        # (connectionId, channel) -> msgSerials of this node's publishes not yet ACKed or NACKed
        self._unresolved: dict[tuple[str, str], list[int]] = {}
        self._reserved: set[tuple[str, str, int]] = set()  # places kept by ``reserve``
        self._attempts: dict[tuple[str, str, int], PublishAttempt] = {}  # the same, by msgSerial

    def publish(
        self, now_ms: int, pub: O.Publish, done: PublishDone, *, attempt: PublishAttempt | None = None
    ) -> None:
        """Have the channel's home number, replicate and fan out ``pub``; ``done(serials, error)``.

        A NACK is sent only when the publish was certainly not numbered: its retries stop at the
        deadline unless some attempt's outcome is unknown (a remote home that did not answer may
        have numbered it), and then they go on, deduplicated by the home, until the dedupe window
        is nearly over (bench/chaos found NACKed publishes delivered, and publishes numbered twice
        after the dedupe record had aged out).
        """
        self.host.now_ms = now_ms
        window = publish_window(self.host.config)
        channel = pub.channel
        if attempt is None:
            # Publisher order: while an earlier publish of this connection on this channel is
            # unresolved, this one names it (``after``) and the home waits for it (issue 11).
            reservation = (pub.connection_id, channel, pub.msg_serial)
            if reservation in self._reserved:
                self._reserved.discard(reservation)  # its place in the order was kept (reserve)
            else:
                self._unresolved.setdefault((pub.connection_id, channel), []).append(pub.msg_serial)
            done = self._resolving(pub.connection_id, channel, pub.msg_serial, done)
        key = (pub.connection_id, channel, pub.msg_serial)
        # A re-send (after a resume) of a publish still in flight shares its attempt: were an earlier
        # attempt's outcome unknown, the re-send must not be NACKed either (frontend.sim seed 69).
        st = attempt or self._attempts.get(key) or PublishAttempt(
            now_ms + window, now_ms + max(window, self.host.config.retention_ms * 3 // 4)
        )
        self._attempts.setdefault(key, st)
        # The nearest earlier one, not the last in the list: a resume's re-sends append out of
        # order ([6, 7, 11, 12, 13, 14, 6, 7, 11]), and naming 11 let 14 be numbered before 12 and
        # 13 (frontend.sim seed 3217).
        earlier = [m for m in self._unresolved.get((pub.connection_id, channel), ()) if m < pub.msg_serial]
        after = max(earlier) if earlier else None
        if pub.after != after:
            pub = dataclasses.replace(pub, after=after)

        if st.refused is not None and st.early_refusal_ok():
            done(None, st.refused)
            return
        if st.early_refusal_ok() and self.host.minority_known(now_ms):
            # This side knows it holds no majority of zones: no home here can number it (prompt 50350).
            self.host.metrics.publishes_refused_no_quorum.inc()
            done(None, no_quorum(channel, self.host.quorum(now_ms)))
            return

        def again(t: int) -> None:
            self.publish(t, pub, done, attempt=st)

        def give_up() -> None:
            if st.uncertain and self.host.now_ms + RETRY_MS <= st.final:
                self._retries.add(self.host.now_ms + RETRY_MS, again)
                return
            state = self.host.quorum(self.host.now_ms)
            if not (state.other_zone_serving or state.may_degrade or self.host.bus is None):
                done(None, no_quorum(channel, state))  # the true reason: a zone out of reach
                return
            seconds = window // 1000
            why = _text(st.why) or "no answer"
            done(None, unavailable(channel, f"not numbered within {seconds} s: {why}"))

        if st.uncertain and self.host.minority_known(now_ms):
            self._retries.add(now_ms + MINORITY_RETRY_MS, again)
            return
        home = self.host.home_of(channel)
        if home == self.host.node_id:

            def local(ok: bool) -> None:
                if not ok or self.host.homes[channel].waits_for(pub):
                    st.why = "this node, its home, is acquiring it" if not ok else "an earlier publish waits"
                    self.host._retry(self.host.now_ms, st.deadline, again, give_up)
                    return

                def abandoned() -> None:
                    st.in_flight -= 1
                    st.uncertain = True  # it was numbered; a replica may hold it
                    self.host._retry(self.host.now_ms, st.deadline, again, give_up)

                def answered(serials: list[str] | None, error: ErrorInfo | None) -> None:
                    st.in_flight -= 1
                    if serials is None and (st.uncertain or st.in_flight or self._wait_on(st, error)):
                        # Refused here, but another attempt (earlier, or a re-send's) may be numbered.
                        self.host._retry(self.host.now_ms, st.deadline, again, give_up)
                    else:
                        done(serials, error)

                st.in_flight += 1
                self.home_side.append(self.host.now_ms, pub, answered, abandoned)

            self.home_side.with_home(now_ms, channel, local)
            return
        assert self.host.bus is not None

        def on_reply(ok: bool, result: Any) -> None:
            st.in_flight -= 1
            answer = O.publish_outcome(ok, result)
            certain = not (st.uncertain or st.in_flight or self._wait_on(st, answer.error))
            match answer.outcome:
                case O.Outcome.NUMBERED:
                    done(list(answer.serials), None)
                case O.Outcome.REFUSED if certain:  # refused for certain, and no other attempt may number it
                    done(None, answer.error or unavailable(channel))
                case O.Outcome.NOT_NUMBERED | O.Outcome.REFUSED:
                    st.why = lambda: f"its home {home} answered: {result}"
                    self.host._retry(self.host.now_ms, st.deadline, again, give_up)
                case O.Outcome.UNKNOWN:
                    st.why = f"its home {home} did not answer"
                    st.uncertain = True
                    self.host._retry(self.host.now_ms, st.deadline, again, give_up)

        st.in_flight += 1
        self.host.bus.request(home, pub, on_reply, RPC_TIMEOUT_S)

    def _wait_on(self, st: PublishAttempt, error: ErrorInfo | None) -> bool:
        """A patient publish's 50350 before the deadline is retried, not sent."""
        return st.patient and error is not None and error.code == ErrorCode.NO_ZONE_QUORUM and (
            self.host.now_ms < st.deadline
        )

    def mark_resent(self, now_ms: int, conn: str, channel: str, msg_serial: int, how: str) -> None:
        """A re-send after a takeover: the owner that handed it over may have an attempt in flight
        (``how`` "uncertain"), so this node must not NACK it before the dedupe window's end (a prompt
        50350 was delivered after the old owner's retry numbered it: frontend.sim --witness seed
        1622); after a takeover from a copy ("patient"), not before the publish deadline."""
        window = publish_window(self.host.config)
        final = now_ms + max(window, self.host.config.retention_ms * 3 // 4)
        st = self._attempts.setdefault((conn, channel, msg_serial), PublishAttempt(now_ms + window, final))
        st.uncertain = st.uncertain or how == "uncertain"
        st.patient = st.patient or how == "patient"

    def reserve(self, conn: str, channel: str, msg_serial: int) -> None:
        """Keep a publish's place in its connection's order on ``channel`` before it is handed to
        ``publish`` (presence's write-ahead holds an enter for one copy write): later publishes
        name it in ``after`` meanwhile. The caller must then ``publish`` it, whatever happens."""
        self._unresolved.setdefault((conn, channel), []).append(msg_serial)
        self._reserved.add((conn, channel, msg_serial))

    def _resolving(self, conn: str, channel: str, msg_serial: int, done: PublishDone) -> PublishDone:
        """``done``, which first forgets the publish as unresolved."""

        def resolved(serials: list[str] | None, error: ErrorInfo | None) -> None:
            queue = self._unresolved.get((conn, channel))
            if queue is not None and msg_serial in queue:
                queue.remove(msg_serial)
                if not queue:
                    del self._unresolved[(conn, channel)]
            for later in queue or () if serials is None and error is not None else ():
                # Later publishes wait for this one (``after``): none was numbered. Refuse them too.
                st = self._attempts.get((conn, channel, later))
                if later > msg_serial and st is not None:
                    st.refused = st.refused or error
            if queue is None or msg_serial not in queue:
                self._attempts.pop((conn, channel, msg_serial), None)
            done(serials, error)

        return resolved
