"""Named pure formulas of SWIM and Lifeguard, as hashicorp/memberlist defines them.

Each one is table-tested in ``tests/gossip/test_formulas.py``. Times are float seconds.
"""

from __future__ import annotations

import math

# memberlist's pushPullScaleThreshold: above this many members the push-pull interval grows.
PUSH_PULL_SCALE_THRESHOLD = 32


def node_scale(n: int) -> float:
    """Return ``max(1, log10(max(1, n)))``: the factor by which cluster size stretches suspicion."""
    return max(1.0, math.log10(max(1.0, float(n))))


def suspicion_timeout(suspicion_mult: int, n: int, probe_interval: float) -> float:
    """Return the minimum suspicion timeout in seconds: ``mult * max(1, log10(n)) * interval``.

    With memberlist's LAN values (mult 4, interval 1 s) this is 4 s for n <= 10 and 8 s for n = 100.
    """
    return suspicion_mult * node_scale(n) * probe_interval


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """Return how many times one rumour is piggybacked: ``mult * ceil(log10(n + 1))``."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


def remaining_suspicion_time(
    confirmations: int, k: int, elapsed: float, minimum: float, maximum: float
) -> float:
    """Return how long a suspicion still has to run, in seconds (negative once it is overdue).

    Lifeguard: the timeout starts at ``maximum`` and shrinks logarithmically toward ``minimum`` as
    ``confirmations`` independent suspicions arrive, reaching ``minimum`` at ``k`` of them:
    ``timeout = max - log(c+1)/log(k+1) * (max - min)``, floored to the millisecond and never below
    ``minimum``. With ``k < 1`` no confirmation is expected and the timeout is ``minimum``.
    """
    if k < 1:
        timeout = minimum
    else:
        frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
        raw = maximum - frac * (maximum - minimum)
        timeout = max(minimum, math.floor(raw * 1000.0) / 1000.0)
    return timeout - elapsed


def scale_timeout(timeout: float, awareness: int) -> float:
    """Return ``timeout * (awareness + 1)``: Lifeguard's local health multiplier applied to a timeout.

    ``awareness`` is the local health score, 0 (healthy) to ``awareness_max_multiplier - 1``.
    """
    return timeout * (awareness + 1)


def push_pull_scale(interval: float, n: int) -> float:
    """Return the push-pull interval stretched for large clusters (memberlist's ``pushPullScale``).

    Up to 32 members the interval is unchanged; above, it is multiplied by
    ``ceil(log2(n) - log2(32)) + 1`` so the cluster-wide TCP load stays roughly constant.
    """
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    return (math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1.0) * interval


def suspicion_confirmations_needed(suspicion_mult: int, n: int) -> int:
    """Return k, the independent confirmations that shrink a suspicion to its minimum.

    memberlist uses ``suspicion_mult - 2``, and 0 when the cluster is too small to supply that many
    (``n - 2 < k``), in which case the suspicion runs for the minimum timeout.
    """
    k = suspicion_mult - 2
    return 0 if n - 2 < k else k


def detection_bound(
    *,
    n: int,
    probe_interval: float,
    probe_timeout: float,
    suspicion_mult: int,
    suspicion_max_mult: int,
    retransmit_mult: int,
    gossip_interval: float,
) -> float:
    """Return an upper bound, in seconds, on the time for every member to mark a crashed member dead.

    Worst case with a healthy local node (awareness 0), summed:
    - first probe of the crashed member: a round-robin pass over ``n - 1`` members, reshuffled at its
      end, probes any member within ``2 * (n - 1)`` intervals, plus the interval that fails;
    - the suspicion runs at most the Lifeguard maximum, ``max_mult * suspicion_timeout``;
    - the dead rumour reaches everyone within its retransmit budget of gossip rounds, plus one round.
    """
    first_probe = (2 * (n - 1) + 1) * probe_interval + probe_timeout
    suspicion = suspicion_max_mult * suspicion_timeout(suspicion_mult, n, probe_interval)
    dissemination = (retransmit_limit(retransmit_mult, n) + 1) * gossip_interval
    return first_probe + suspicion + dissemination
