"""PersistedHistory picks the store for persisted channels and the memory reader for the others."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from frontend.config import FrontendConfig
from frontend.history import PersistedHistory, StoredPage
from frontend.metrics import Metrics
from frontend.persistence import Persistence, open_store
from frontend.store import StoredEntry


@dataclass
class Query:
    limit: int = 10
    backwards: bool = True
    start: int | None = None
    end: int | None = None
    cursor: str | None = None


class Memory:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def read(self, channel: str, query: Any) -> StoredPage:
        self.asked.append(channel)
        return StoredPage([{"serial": "mem:1"}], None)


@dataclass
class Node:
    config: FrontendConfig
    persistence: Persistence | None = None


async def test_persisted_channels_read_the_store_others_the_memory(tmp_path: Path) -> None:
    config = FrontendConfig.load(None, env={}, dev=True, channels={"p:*": {"persist": "1h"}})
    store = open_store(f"sqlite:{tmp_path / 'h.sqlite3'}")
    node = Node(config)
    memory = Memory()
    reader = PersistedHistory(node, memory)
    with trio.fail_after(10):
        # Before the store is open every channel is read from memory.
        assert (await reader.read("p:x", Query())).messages == [{"serial": "mem:1"}]
        await store.open()
        wire = {"channelSerial": "e:1", "messages": [{"serial": "e:1", "data": "stored"}]}
        await store.append([StoredEntry("p:x", "e", 1, 1, 100, wire)])
        node.persistence = Persistence(config, Metrics(), store)
        assert (await reader.read("p:x", Query())).messages == [{"serial": "e:1", "data": "stored"}]
        assert (await reader.read("m:x", Query())).messages == [{"serial": "mem:1"}]
        await store.close()
    assert memory.asked == ["p:x", "m:x"]
