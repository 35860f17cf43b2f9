"""The cluster dashboard (``/dashboard/``) in chromium, live from a real cluster.

It lists every member with zone, role, state, load and incarnation, each frontend's write
availability and connection count and where a demo room's channel has its home and replica; it
updates without a reload, and a frontend killed with SIGKILL shows as dead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from tests.browser.conftest import http_base
from tests.browser.harness import in_browser, join_demo, new_page, screenshot
from tests.support.cluster import LocalCluster

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOM = "dash"
CHANNEL = f"demo:{ROOM}"


def row_state(page: Page, node: str) -> str | None:
    return page.get_attribute(f'#members tr[data-node="{node}"]', "data-state")


async def test_dashboard_shows_the_live_cluster_and_a_killed_frontend_as_dead(cluster: LocalCluster) -> None:
    base = http_base(cluster, 0)
    names = sorted(n.name for n in cluster.nodes.values())
    frontends = sorted(n.name for n in cluster.frontends)
    console: list[str] = []

    def scenario(browser: Browser) -> dict[str, Any]:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        chat = new_page(context, console)
        join_demo(chat, base, name="carol", room=ROOM, transport="web_socket")
        chat.evaluate("(t) => window.demo.send(t)", "placing the channel")
        dash = new_page(context, console)
        dash.goto(f"{base}/dashboard/")
        # One refresh in which every member is alive, every frontend answered the router, the demo
        # tab's connection is counted, and the channel has a home and a replica, in the table too.
        placed = dash.wait_for_function(
            """([names, channel]) => {
                const state = window.dashboard.state;
                if (!state) return null;
                const rows = [...document.querySelectorAll('#members tbody tr')];
                const alive = rows.filter(r => r.dataset.state === 'alive').map(r => r.dataset.node);
                const reports = Object.values(state.frontends);
                const ch = document.querySelector(`#channels tr[data-channel="${channel}"]`);
                const ok = names.every(n => alive.includes(n))
                    && reports.every(f => f.ok) && reports.some(f => f.cluster.connections.live >= 1)
                    && ch !== null && ch.querySelector('.home code') !== null
                    && ch.querySelector('.replica code') !== null;
                return ok ? {state, home: ch.querySelector('.home code').textContent,
                             replica: ch.querySelector('.replica code').textContent} : null;
            }""",
            arg=[names, CHANNEL],
        ).json_value()
        before, home, replica = placed["state"], placed["home"], placed["replica"]
        rows = {
            node: {
                "zone": dash.inner_text(f'#members tr[data-node="{node}"] td:nth-child(3)'),
                "role": dash.inner_text(f'#members tr[data-node="{node}"] td:nth-child(2)'),
            }
            for node in names
        }
        writes = {n: dash.get_attribute(f'#members tr[data-node="{n}"] [data-writes]', "data-writes")
                  for n in frontends}  # fmt: skip
        shots = [screenshot(dash, "dashboard-before-kill")]
        refreshes = dash.evaluate("window.dashboard.refreshes")

        victim = replica if replica in frontends else frontends[-1]
        trio.from_thread.run(cluster.kill, victim)
        dead = '(node) => document.querySelector(`#members tr[data-node="${node}"]`)?.dataset.state'
        dash.wait_for_function(f"{dead} === 'dead'", arg=victim)
        # The timeline tells the kill; the legend names both zones; incarnation is explained.
        timeline = dash.wait_for_function(
            """(node) => window.dashboard.timeline.find(e => e.text.startsWith(`${node}: `)
                && e.text.includes('dead'))?.text""", arg=victim).json_value()
        shots.append(screenshot(dash, "dashboard-after-kill"))
        return {
            "timeline": timeline,
            "legend": dash.inner_text("#zones"),
            "incarnation_help": dash.get_attribute('#members th[title*="incarnation"]', "title"),
            "before": before,
            "home": home,
            "replica": replica,
            "rows": rows,
            "writes": writes,
            "victim": victim,
            "victim_row_class": dash.get_attribute(f'#members tr[data-node="{victim}"]', "class"),
            "refreshes": (refreshes, dash.evaluate("window.dashboard.refreshes")),
            "others": {n: row_state(dash, n) for n in names if n != victim},
            "shots": shots,
        }

    result = await in_browser(scenario)
    before = result["before"]
    assert isinstance(before, dict)
    members = {m["node_id"]: m for m in before["members"]}
    rows = result["rows"]
    assert isinstance(rows, dict)
    for name, node in cluster.nodes.items():
        assert rows[name] == {"zone": node.zone, "role": node.role}, console
        assert isinstance(members[name]["incarnation"], int)
        assert isinstance(members[name]["load"], (int, float))
    reports = before["frontends"]
    assert sorted(reports) == frontends and all(r["ok"] for r in reports.values())
    home, replica = result["home"], result["replica"]
    assert CHANNEL in reports[home]["cluster"]["channels"]["home"]
    assert CHANNEL in reports[replica]["cluster"]["channels"]["replica"]
    assert cluster.nodes[str(home)].zone != cluster.nodes[str(replica)].zone
    assert sum(r["cluster"]["connections"]["live"] for r in reports.values()) >= 1
    # Write availability per frontend (issue 11): two zones in reach, so every one numbers publishes.
    assert result["writes"] == {n: "ok" for n in frontends}, result["writes"]
    assert all(r["cluster"]["write"]["available"] for r in reports.values())
    # Updated without a reload, and only the killed frontend is dead.
    first, last = result["refreshes"]
    assert last > first
    assert "dead" in str(result["victim_row_class"])
    assert set(result["others"].values()) <= {"alive", "suspect"}
    assert str(result["victim"]) in str(result["timeline"])
    assert "zone a" in str(result["legend"]) and "zone b" in str(result["legend"])
    assert "refute a suspicion" in str(result["incarnation_help"])
