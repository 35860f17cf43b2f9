"""The deterministic cluster simulation (frontend/sim.py): 200 seeds pass, runs replay bit for bit,
and the seeds that caught real bugs stay green.

Runs go through ``python -m frontend.sim`` in a subprocess. A run is the same under any
PYTHONHASHSEED (string hashing is salted per process; CI's salt differs from ours).
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

import pytest
import trio

from frontend.sim import FAULT_KINDS
from frontend.simnet import SimRandom
from tests.support.procs import REPO

SEEDS = 200
BOUND_S = 600

# Seeds (with their shrunk fault schedules and sim flags) that caught a bug; each must pass on the
# fixed code, and failed with the fix reverted.
REGRESSIONS: dict[str, tuple[int, list[list[Any]], list[str]]] = {
    # Issue 11: a home lost (zone b) under pipelined publishes; their retries raced and one
    # connection's publishes 15 and 16 on ch1 were numbered 16 first (publisher_order).
    "issue11_publisher_order": (2, [[3426, "drain", "fe-a2", 5841], [14179, "zone_loss", "b", 4691]], []),
    # Issue 11: zone b lost alone (both frontends killed). Before the zone quorum, zone a's homes had
    # no replica in another zone and waited: no channel ACKed again until the heal restarted zone b,
    # 16 s later (zone_loss_unavailable: ch0 first ACK at 21.5 s, ch1 NACKed). With the witness zone's
    # grant they copy inside zone a and ACK within the 10 s the check allows.
    "issue11_zone_loss_available": (1, [[5531, "zone_loss", "b", 3153]], ["--witness"]),
    # The same with zone a lost (its publishes NACKed 50350 before the fix, none ACKed for 16 s).
    "issue11_zone_a_loss_available": (0, [[5707, "zone_loss", "a", 3232]], ["--witness"]),
    # Zone quorum: a degraded home demoted at a heal made its node release the grant though its log
    # (now a copy) held entries only zone a had; zone b then continued a stale copy (split_brain).
    # Fixed: ChannelLog.zone_only keeps the node's place at the witness until another zone holds them.
    "issue11_release_only_when_copied": (
        232,
        [
            [3585, "drain", "fe-b1", 1697],
            [4443, "zone_partition", "b", 4002],
            [6390, "zone_partition", "a", 5824],
        ],
        ["--witness"],
    ),
    # Two restarts and a partition: a partitioned replica made itself home from its copy (serial 28
    # included) while the old home demoted, re-acquired without it and numbered another publish 28;
    # after the heal the stale home answered a re-sent publish from its dedupe record: serial 28 ACKed
    # to two publishes (split_brain). Fixed: a home answers from its dedupe record only once synced.
    "dedupe_from_stale_home": (
        1166,
        [
            [6440, "restart", "fe-a1", 1483],
            [7412, "restart", "fe-b1", 635],
            [7467, "node_partition", "fe-b2", 3624],
        ],
        [],
    ),
    # 67eebf9 reverted (a home ACKs alone while its map knows another zone): a 3 s partition of zone b;
    # both sides numbered the same serials (split_brain) and ACKed publishes were lost.
    "67eebf9_no_home_acks_alone": (6, [[3716, "zone_partition", "b", 3347]], []),
    # a1febb0 reverted (a peer request executed after its sender's deadline): a 15 s partition of fe-a1
    # held publish requests in its links' buffers; executed at the heal, past a 5 s TTL's dedupe
    # window, publishes already NACKed were numbered and delivered (nacked_delivered).
    "a1febb0_stale_requests_dropped": (8, [[2804, "node_partition", "fe-a1", 14932]], ["--ttl-ms", "5000"]),
    # 916f2bb reverted (a publish whose outcome is unknown NACKed at its deadline): a kill, a tunnel
    # cut and a 9 s drain with a 20 s TTL; 18 NACKed publishes were delivered (nacked_delivered).
    "916f2bb_nack_only_when_certain": (
        44,
        [[3161, "kill", "fe-b2", 1014], [4831, "tunnel_cut", "c0", 1170], [5710, "drain", "fe-b1", 9418]],
        ["--ttl-ms", "20000"],
    ),
    # 7d4669c reverted (fan-out may re-send what an attach replay gave): a kill, a zone partition and
    # a kill; resumed subscribers got entries twice (duplicated 16). Seed 31 below caught it before
    # issue 10's fixes (the stale attach answer of seed 5752 was its path); it stays as a run.
    "7d4669c_no_fanout_duplicates": (
        173,
        [[3635, "kill", "fe-b2", 2667], [11747, "zone_partition", "b", 1976], [13458, "kill", "fe-a2", 1567]],
        [],
    ),
    "7d4669c_seed_31": (
        31,
        [
            [2529, "node_partition", "fe-b1", 14261],
            [5247, "drain", "fe-a1", 11782],
            [7109, "zone_partition", "a", 3734],
        ],
        ["--ttl-ms", "20000"],
    ),
    # c257f29 reverted (a client retrying a takeover with the key it replaced gets a new connection):
    # fe-a1 drained, a quarter of the resumes lose their CONNECTED; the retry with the replaced key
    # at the node that took the connection over was answered 80008 (needless_new_connection).
    "c257f29_replaced_key_keeps_connection": (
        0,
        [[5707, "drain", "fe-a1", 3232]],
        ["--connected-lost", "0.25"],
    ),
    # Issue 18 (seed 12313's stale-home pattern): fe-a1, partitioned alone, became home of ch1 with no
    # copy and started a new epoch; its subscribers got 90003 there, then were sent back to the old
    # epoch at the heal (serial_backwards).
    "issue18_fresh_epoch_when_cut_off": (4, [[13351, "node_partition", "fe-a1", 4167]], []),
    # Issue 10's 1000-seed run. fe-b2 (home) partitioned, its replica fe-a2 restarted: fe-b1 found no
    # copy and started a new epoch; at the heal fe-b2 re-acquired from its own longer copy of the
    # OLD epoch (copies were compared by length alone) and sent every subscriber back to it
    # (serial_backwards). Fixed: epochs carry their birth; the newest epoch's copy wins.
    "5013_newest_epoch_wins": (
        5013,
        [[12723, "node_partition", "fe-b2", 5908], [13768, "restart", "fe-a2", 2090]],
        [],
    ),
    # The same seed with a tunnel cut: fe-b2 never stepped down, and answered a re-attach holding a
    # serial of the newer epoch with 90003 at its old one (serial_backwards). Fixed: a serial of a
    # newer epoch means the home is stale (Home.behind); if no copy of that epoch survives, the next
    # home starts a new epoch rather than continue the superseded one.
    "5013_newer_epoch_steps_home_down": (
        5013,
        [
            [9234, "tunnel_cut", "c2", 2067],
            [12723, "node_partition", "fe-b2", 5908],
            [13768, "restart", "fe-a2", 2090],
        ],
        [],
    ),
    # fe-b2 (home) back from a 2 s partition: its Replicate of serial 17 followed on from the 15 and
    # 16 that its successor fe-b1 had numbered in fe-a2's copy, then fe-b2's whole log agreed with
    # that copy at 17: both homes ACKed 15 and 16 (split_brain, lost). Fixed: a copy takes entries
    # one by one only from the home whose whole log it took (ChannelLog.synced_from).
    "5501_replicate_only_from_synced_home": (5501, [[4064, "node_partition", "fe-b2", 2283]], []),
    "5151_replicate_only_from_synced_home": (
        5151,
        [[8994, "restart", "fe-a1", 5645], [12797, "node_partition", "fe-b2", 3029]],
        [],
    ),
    "5776_replicate_only_from_synced_home": (
        5776,
        [[4063, "drain", "fe-a1", 5107], [9936, "node_partition", "fe-b2", 2672]],
        [],
    ),
    # Zone b lost and the home fe-a2 killed (no copy left): fe-a1 started a new epoch and fanned its
    # first entries out to local subscribers before their retried re-attach announced 90003
    # (silent_gap). Fixed: fan-out announces the discontinuity to a subscriber of an older epoch.
    "5476_new_epoch_announced_at_fan_out": (
        5476,
        [[7625, "zone_loss", "b", 2726], [8031, "kill", "fe-a2", 529], [9378, "restart", "fe-b1", 2590]],
        [],
    ),
    # An attach sent to fe-b2 just before it was partitioned came back at the heal, answered by the
    # stale home from its log at 26 while fe-b1 (now home) had committed 27 (silent_gap, lost).
    # Fixed: an attach answer from a node the map no longer names home is retried at the home.
    "5752_stale_attach_answer_retried": (
        5752,
        [[3188, "drain", "fe-a1", 5400], [4320, "node_partition", "fe-b2", 2149]],
        [],
    ),
    # Zone a lost with a publisher's frontend: its re-sent publishes, numbered and confirmed before,
    # waited at the home (not replica_synced without zone a) until the home restarted and the next
    # epoch numbered them again (duplicated, serial_mismatch). Fixed: a home answers from its dedupe
    # record a serial its own replica confirmed (Home.confirmed), even while no replica is in reach.
    # 01fcbdd reverted (a replica takes a whole log that disagrees with its copy at the same length):
    # seed 5501 as drawn; fe-b2's log at 17 replaced fe-b1's at 17 in fe-a2 (lost 15, split_brain 18).
    "01fcbdd_replica_refuses_disagreeing_log": (
        5501,
        [
            [4064, "node_partition", "fe-b2", 2283],
            [12175, "kill", "fe-b2", 5661],
            [13912, "link_reset", "fe-b1|fe-a1", 2991],
        ],
        [],
    ),
    # Issue 10's 2000-seed run. Zone a lost, then fe-b2 killed: fe-a2 was demoted (a revived peer)
    # with 24..27 numbered but not fanned out, and re-acquired them from fe-b1's copy as committed;
    # with publishing over, nothing made fe-b1's stream catch up (lost). Fixed: once its replica
    # holds the log, a new home pushes the last entry to its followers, who resync if they lack it.
    "663_new_home_sends_its_tail": (
        663,
        [[7896, "zone_loss", "a", 4397], [14822, "kill", "fe-b2", 2032]],
        [],
    ),
    # Zone b lost, then fe-a2 (home, blocked with no replica) drained: it waited for its pending
    # appends before handing the log over, which never happened, and exited with it; the next epoch
    # numbered the re-sent publishes again (duplicated). Fixed: a blocked home hands over at once.
    "1510_blocked_home_hands_over": (
        1510,
        [[5894, "zone_loss", "b", 3944], [15598, "drain", "fe-a2", 5012]],
        [],
    ),
    # A failed resume (owner partitioned, secondary restarted: 80008) gave c4 a new connection, and
    # the old connection's frontend numbered its un-ACKed publishes after the new connection's. The
    # sim judged publisher order per client; the promise is per connection (simcheck._per_connection).
    "1257_publisher_order_per_connection": (
        1257,
        [
            [10814, "zone_partition", "a", 5817],
            [11440, "restart", "fe-b1", 826],
            [12111, "drain", "fe-a1", 3689],
        ],
        [],
    ),
    # Found with the fix for 1510 in place: fe-a1, a blocked home, handed its log over with pending
    # appends 29..32 and followed the new home from 32 although its own subscribers had 28: 29..32
    # never reached them (silent_gap, lost). Fixed: it follows from what it committed.
    "558_handover_follows_from_committed": (
        558,
        [[8922, "restart", "fe-a2", 745], [9329, "zone_loss", "b", 5165]],
        [],
    ),
    # Found by the needless_new_connection check: fe-a1 handed a connection to fe-b1, fe-b1 drained,
    # and the client's resume (with fe-b1's key) at fe-a1 met fe-a1's tombstone: a new connection
    # while fe-b1 still held it. Fixed: a tombstone refuses only keys older than the hand-over.
    "476_tombstone_refuses_older_keys_only": (
        476,
        [[5637, "drain", "fe-a1", 5834], [7968, "drain", "fe-b1", 2338]],
        [],
    ),
    # The needless_new_connection check itself: fe-a1 (partitioned, draining) still held epoch 1 of
    # a connection fe-b2 had taken over at epoch 2 and lost with zone b; a resume with the epoch-2 key
    # got a new connection, rightly: only a holder at the key's epoch or later counts.
    "1622_stale_holder_is_no_holder": (
        1622,
        [
            [7436, "zone_partition", "a", 5297],
            [10699, "drain", "fe-a1", 3293],
            [12129, "zone_loss", "b", 3975],
        ],
        [],
    ),
    # Issue 11's double faults with a witness (--witness, 2000 seeds: 11 failed). Zone a partitioned
    # (the witness sided with b, which committed alone), then zone b lost: zone a acquired b's
    # channels from copies older than what b ACKed alone after the witness reported b's loss, because
    # a fetched copy was dated by its arrival (lost, split_brain). Fixed: copies carry when they were
    # made (a blocked home's hand-over counts as a copy), so those logs start new epochs.
    "737_copy_dated_by_its_making": (
        737,
        [[7190, "zone_partition", "a", 4413], [10510, "zone_loss", "b", 4205]],
        ["--witness"],
    ),
    # The same pattern: fe-a2 started a new epoch after b's loss, but fe-a1's stream still held the old
    # epoch and ignored every delivery of the new one (lost, never announced). Fixed: a delivery of
    # a newer epoch from the stream's home re-attaches it (90003 announced).
    "508_stream_follows_newer_epoch": (
        508,
        [[2785, "drain", "fe-b1", 886], [3803, "zone_partition", "a", 1890], [5297, "zone_loss", "b", 4875]],
        ["--witness"],
    ),
    # A minority home (blocked, holding a stale copy) kept never-sent appends for the 15 s publish
    # deadline and committed them at the heal while the majority's degraded home numbered the same
    # serials (split_brain, lost, duplicated, silent_gap). Fixed by refusing them as soon as the side
    # knows it holds no majority (minority_known).
    "457_minority_refuses_at_once": (
        457,
        [[4063, "node_partition", "fe-a2", 2310], [7915, "zone_partition", "a", 3508]],
        ["--witness"],
    ),
    "634_minority_refuses_at_once": (
        634,
        [[7597, "zone_partition", "b", 2722], [11681, "zone_loss", "a", 521]],
        ["--witness"],
    ),
    "692_minority_refuses_at_once": (
        692,
        [
            [12111, "node_partition", "fe-b2", 2296],
            [14687, "drain", "fe-b1", 3494],
            [14935, "node_partition", "fe-a2", 2015],
        ],
        ["--witness"],
    ),
    "1632_minority_refuses_at_once": (
        1632,
        [[9910, "zone_partition", "b", 3707], [14066, "zone_loss", "a", 1965]],
        ["--witness"],
    ),
    "1819_minority_refuses_at_once": (
        1819,
        [
            [3872, "restart", "fe-a1", 4855],
            [7890, "node_partition", "fe-b2", 4911],
            [12373, "restart", "fe-a2", 871],
        ],
        ["--witness"],
    ),
    # fe-a1 (draining, in the partitioned minority) kept retrying publishes whose outcome it did not
    # know after its connection was taken over; zone b ACKed them alone and was lost; the new epoch
    # numbered fe-a1's retries again (duplicated). With prompt refusals, the new owner NACKed the
    # client's re-sends while fe-a1 was still numbering them (nacked_delivered). Fixed: a re-send after
    # a takeover, at or below the msgSerial the previous owner saw, is never NACKed early.
    "1622_resend_after_takeover_not_refused": (
        1622,
        [
            [7436, "zone_partition", "a", 5297],
            [10699, "drain", "fe-a1", 3293],
            [12129, "zone_loss", "b", 3975],
        ],
        ["--witness"],
    ),
    # With prompt refusals: c2's publishes were in flight at fe-b2 when the client moved to fe-a2
    # across a zone partition (no witness); fe-a2, taking over from a copy, refused the re-sends at
    # once and fe-b2 committed them at the heal (nacked_delivered). Fixed: a connection taken over from
    # a copy keeps the deadline rule.
    "13_taken_over_from_a_copy_is_patient": (
        13,
        [
            [9732, "kill", "fe-a1", 4984],
            [13318, "zone_partition", "b", 2923],
            [14621, "tunnel_cut", "c2", 1365],
        ],
        [],
    ),
    # A refusal in the minority whose NACK was held behind another channel's publish; after a heal
    # and zone a's loss, the new owner numbered the client's re-send after its later publish
    # (publisher_order). Fixed: a session's copy carries its last refusals.
    "478_copy_carries_refusals": (
        478,
        [[4450, "zone_partition", "a", 4302], [10125, "zone_loss", "a", 4682]],
        ["--witness"],
    ),
    # fe-b2, a blocked home in the partitioned minority, drained and handed fe-b1 entries it never
    # committed; fe-b1 fanned them out as committed while zone a numbered the same serials under the
    # witness's grant (split_brain). Fixed: a blocked home hands over only what it committed.
    "1371_blocked_home_hands_over_committed_only": (
        1371,
        [
            [4909, "drain", "fe-a1", 1895],
            [10295, "zone_partition", "b", 5596],
            [12174, "drain", "fe-b2", 2948],
        ],
        ["--witness"],
    ),
    # Zone b partitioned (the witness sided with zone a, whose fe-a2 took ch1 and numbered it alone),
    # then fe-a1 drained. fe-b2 asked only fe-b1 for copies of ch1; zone a came into its map before
    # the answer, so, with no copy and the other zone no longer out of reach, it started a new epoch
    # and numbered a re-sent publish that fe-a2 had numbered and fanned out (serial_mismatch). Fixed:
    # a peer that came into sight during the fetch counts as silent; the acquisition is deferred.
    "306_acquire_waits_for_peers_seen_meanwhile": (
        306,
        [[4151, "zone_partition", "b", 4362], [6800, "drain", "fe-a1", 751]],
        ["--witness"],
    ),
    # fe-b2 then fe-b1 cut off (zone a committed alone under the witness's grant), healed; fe-a2 synced
    # ch0 to fe-b2 and committed 50 (c2's publish, fanned out), then zone a was lost with c2's ACK
    # before it released the grant. Zone a's restart made the witness report its data lost, and
    # fe-b2 started a new epoch in place of its copy (which held 50) and numbered c2's re-send again
    # (serial_mismatch). Fixed: a new epoch keeps the serials its replaced copy gave committed
    # publishes (ChannelLog.inherit_publishes), so the re-send is answered with fjduc3:50.
    "531_new_epoch_keeps_replaced_serials": (
        531,
        [
            [12308, "node_partition", "fe-b2", 978],
            [12513, "node_partition", "fe-b1", 3153],
            [15137, "zone_loss", "a", 1541],
        ],
        ["--witness"],
    ),
    "5170_confirmed_dedupe_answered": (
        5170,
        [[2627, "zone_loss", "a", 1844], [13736, "restart", "fe-b2", 553]],
        [],
    ),
    # Issue 10's 10,000-seed run. Zone a lost (the home fe-a2), then the replica fe-b2 that had taken
    # the home with serials up to 42 restarted: only fe-b1's older copy (17) was left. fe-b2 stepped
    # down when a stream asked past 17, but forgot why; fe-a2, restarted, continued the copy at 17
    # and ACKed serials 18.. again (split_brain, lost). Fixed: a copy remembers a serial of its epoch
    # seen past its end (ChannelLog.ahead_seq, carried in snapshots); such a copy is superseded.
    "3038_copy_seen_past_its_end_is_superseded": (
        3038,
        [[2811, "restart", "fe-b2", 1962], [9633, "zone_loss", "a", 1756], [10413, "restart", "fe-b2", 5114]],
        [],
    ),
    "7315_copy_seen_past_its_end_is_superseded": (
        7315,
        [
            [2251, "node_partition", "fe-b2", 3336],
            [12073, "zone_loss", "a", 1297],
            [15952, "kill", "fe-b2", 4926],
        ],
        [],
    ),
    # Zone b lost with ch1's home: its replica fe-a2 became home from its copy, whose last entry (11)
    # the old home had numbered but not yet committed, and exposed it at once (a stream's catch-up)
    # though no replica could be placed; then fe-a2 was killed with the only copy, and the next
    # epoch numbered the re-sent publish again (duplicated, serial_mismatch). Fixed: a copy learns
    # how far its home committed (Replicate.committed, snapshots); entries past it are in doubt at
    # the next home (Home.in_doubt) until its replica holds them or a client shows it saw one.
    "2981_in_doubt_entries_wait_for_a_replica": (
        2981,
        [[3552, "zone_loss", "b", 5889], [6357, "kill", "fe-a2", 3577]],
        [],
    ),
    "6262_in_doubt_entries_wait_for_a_replica": (
        6262,
        [[10915, "zone_loss", "a", 3502], [14548, "kill", "fe-b2", 4036]],
        [],
    ),
    # The owner fe-a1 restarted; the client's resume went to the secondary, which took the
    # connection over, but its CONNECTED was lost (--connected-lost) or came after the client's
    # connect timeout: the retry with the replaced key was routed to the key's owner, fe-a1, back
    # with nothing (or with a copy of the newer epoch, as the new owner's secondary): a new
    # connection while the taker held it (needless_new_connection). Fixed: a peer answering
    # SessionFetch says it holds the connection live (``held``), and the takeover asks it back
    # (Takeover._reclaim: only if its takeover replaced exactly this key and the client never spoke
    # with the new one).
    "45_restarted_owner_reclaims_from_the_taker": (
        45,
        [[9887, "restart", "fe-a1", 1350]],
        ["--connected-lost", "0.25"],
    ),
    "58_restarted_owner_reclaims_from_the_taker": (
        58,
        [[6510, "restart", "fe-a1", 515]],
        ["--connected-lost", "0.25"],
    ),
    "7057_restarted_owner_reclaims_from_the_taker": (
        7057,
        [[6504, "zone_partition", "b", 2248], [6952, "restart", "fe-a1", 2269]],
        [],
    ),
    # A zone partition healed (every home demoted to a copy) just as fe-a2 drained: it held ch1's
    # only zone-a copy and no home was there to take it; it left with it, zone b was lost next, and
    # the next epoch numbered a re-sent publish again (duplicated, serial_mismatch). Fixed: a drain
    # leaves every channel copy it holds at the channel's next home and replica (copies_to_leave).
    "9201_drain_leaves_its_copies": (
        9201,
        [
            [8405, "zone_partition", "a", 5750],
            [14502, "drain", "fe-a2", 918],
            [15204, "zone_loss", "b", 5054],
        ],
        [],
    ),
    # fe-b2 (home, partitioned) demoted at the heal with committed 15 and re-acquired ch1 from
    # fe-b1's copy at 17; its local subscriber (at 15) waited for its catch-up attach (retried) while
    # the new home fanned out 18 to it: 16 and 17 were then suppressed as already had (silent_gap,
    # lost). Fixed: a home's fan-out first gives a subscriber behind in the epoch what it lacks.
    "6622_home_fans_out_gaps_first": (
        6622,
        [[3989, "restart", "fe-a1", 4953], [6060, "node_partition", "fe-b2", 3066]],
        [],
    ),
    "7496_home_fans_out_gaps_first": (
        7496,
        [
            [6041, "node_partition", "fe-a1", 3617],
            [9702, "node_partition", "fe-a2", 4778],
            [10256, "drain", "fe-b2", 4051],
        ],
        [],
    ),
    # Zone b cut off while c4 was in a tunnel: fe-b2 took c4's connection over from its copy for a
    # resume c4 gave up on; fe-a1 handed it over at the heal; c4's resume at fe-a1 with its old key
    # 0.5 s later got 80008 because fe-a1's map still listed fe-b2 dead, so it never asked it back.
    "347_reclaim_from_a_taker_our_map_lists_dead": (
        347,
        [[4345, "zone_partition", "b", 3277], [4714, "tunnel_cut", "c4", 5627]],
        ["--judge-ttl"],
    ),
    # fe-a2, back from zone b's partition, deferred ch0's acquisition 2 s (fe-b1 dead, still listed
    # dead); c-publisher's resume re-sent its unACKed publishes, appended to the unresolved list out
    # of order, and msgSerial 14 named 11 (the last in the list), not 13: the home numbered 14
    # before 12 and 13 (publisher_order 11). A publish names the nearest earlier one now.
    "3217_after_names_the_nearest_earlier_publish": (
        3217,
        [
            [2804, "kill", "fe-b1", 4693],
            [6529, "zone_partition", "b", 4386],
            [14712, "tunnel_cut", "c4", 4151],
        ],
        [],
    ),
}


async def _sim(*args: str, bound_s: float = 120, salt: str | None = None) -> tuple[int, dict[str, Any]]:
    env = None if salt is None else dict(os.environ, PYTHONHASHSEED=salt)
    with trio.fail_after(bound_s):
        proc = await trio.run_process(
            [sys.executable, "-m", "frontend.sim", *args],
            cwd=str(REPO),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    out = proc.stdout.decode()
    assert out.strip(), proc.stderr.decode()[-4000:]
    return proc.returncode, json.loads(out)


async def test_two_hundred_seeds_pass() -> None:
    code, summary = await _sim("--seeds", str(SEEDS), "--procs", "2", bound_s=BOUND_S)
    assert summary["seeds"] == SEEDS
    assert set(summary["faults_by_kind"]) == set(FAULT_KINDS)
    assert summary["publishes"] > 50 * SEEDS and summary["acked"] > 0.9 * summary["publishes"]
    assert code == 0 and summary["ok"], json.dumps(summary["first_failure"], indent=1)[:4000]
    assert summary["beyond_model_seeds"] == []  # the judge's exception (simloss.py) is for double faults


async def test_a_hundred_seeds_pass_with_a_witness_zone() -> None:
    """The zone quorum (issue 11): a witness router in zone w; a zone lost alone must leave every
    channel ACKing within 10 s, and every invariant holds across the other faults."""
    code, summary = await _sim("--seeds", "100", "--procs", "2", "--witness", bound_s=BOUND_S)
    assert summary["seeds"] == 100 and summary["faults_by_kind"].get("zone_loss", 0) > 10
    assert code == 0 and summary["ok"], json.dumps(summary["first_failure"], indent=1)[:4000]


async def test_one_fault_never_costs_a_connection_or_a_channel_its_continuity() -> None:
    """With one fault per run, each shorter than the TTL, no client gets a new connectionId and no
    channel a 90003 (``--judge-ttl``; issue 18). Two overlapping state losses can destroy every copy
    and are not judged this way yet."""
    code, summary = await _sim(
        "--seeds", "300", "--faults", "1", "--judge-ttl", "--procs", "2", bound_s=BOUND_S
    )
    assert summary["seeds"] == 300 and len(summary["faults_by_kind"]) == len(FAULT_KINDS)
    assert code == 0 and summary["ok"], json.dumps(summary["first_failure"], indent=1)[:4000]


async def test_a_side_without_a_majority_refuses_at_once() -> None:
    """Issue 11: zone a cut off from zone b and the witness zone (with b): zone a holds 1 of 3 zone
    votes and knows it (no witness in reach), so its publishes are refused with 50350 at once (median
    0.034 s), not at the 15 s publish deadline. Publishes in flight at the cut have an unknown
    outcome and wait for the heal, as do their connections' later answers."""
    schedule = [[5000, "zone_partition", "a", 8000]]
    code, result = await _sim("--seed", "4", "--witness", "--schedule", json.dumps(schedule))
    assert code == 0 and result["ok"], result["examples"]
    assert result["refused_no_quorum"] > 20 and result["refused_no_quorum_median_s"] < 1.0, result


async def test_a_seed_replays_bit_for_bit() -> None:
    _, first = await _sim("--seed", "7")
    _, again = await _sim("--seed", "7", "--schedule", json.dumps(first["schedule"]))
    assert first["digest"] == again["digest"] and first["events"] == again["events"]
    _, other = await _sim("--seed", "8")
    assert other["digest"] != first["digest"]


@pytest.mark.parametrize(
    "args", [["--seed", "0"], ["--seed", "4", "--witness"], ["--seed", "20", "--connected-lost", "0.25"]]
)
async def test_a_run_is_the_same_under_any_string_hash_salt(args: list[str]) -> None:
    # A home pushed each entry to its remote subscribers in a set's order, which the salt decides;
    # each push draws its latency from the seeded network, so the salt changed the run (seed 0's
    # digest under PYTHONHASHSEED=1 differed from 0's, 19 seeds of 60). Nothing may depend on it.
    _, first = await _sim(*args, salt="0")
    _, other = await _sim(*args, salt="1")
    assert first["digest"] == other["digest"] and first["events"] == other["events"]


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
async def test_regression_seed_passes(name: str) -> None:
    seed, schedule, flags = REGRESSIONS[name]
    code, result = await _sim("--seed", str(seed), "--schedule", json.dumps(schedule), *flags)
    assert code == 0 and result["ok"], result["examples"]


def test_sim_random_draws_what_random_draws() -> None:
    """``SimRandom.randint`` is a shortcut: every seeded run depends on its draws being Random's."""
    for seed in (0, 7, "schedule:3", 2**64 - 1):
        fast, slow = SimRandom(seed), random.Random(seed)
        for lo, hi in ((1, 15), (0, 0), (300, 2_500), (1, 2**40), (-5, 5)):
            assert [fast.randint(lo, hi) for _ in range(200)] == [slow.randint(lo, hi) for _ in range(200)]
        assert fast.getrandbits(64) == slow.getrandbits(64) and fast.random() == slow.random()
