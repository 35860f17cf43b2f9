"""History pages cut from a log: direction, limit, start/end, and serial cursors."""

from frontend.channel_log import ChannelLog
from frontend.rest.history import HistoryQuery, page_of

ENV = {"action": 15, "channel": "c"}


def log_of(n: int) -> ChannelLog:
    lg = ChannelLog("c", "ep", max_messages=1000, retention_ms=10**9)
    for i in range(n):
        # Entries of two messages each; message timestamps 100 * seq.
        lg.append(
            i,
            [
                {"data": 2 * i, "timestamp": 100 * (2 * i + 1)},
                {"data": 2 * i + 1, "timestamp": 100 * (2 * i + 2)},
            ],
            dict(ENV),
        )
    return lg


def pages(lg: ChannelLog, query: HistoryQuery) -> list[list[int]]:
    out = []
    while True:
        page = page_of(lg.epoch, lg.entries(), query)
        out.append([m["data"] for m in page.messages])
        if page.next_cursor is None:
            return out
        query = HistoryQuery(query.limit, query.backwards, query.start, query.end, page.next_cursor)


def test_backwards_pages_split_entries_and_cover_everything_once():
    assert pages(log_of(3), HistoryQuery(limit=4)) == [[5, 4, 3, 2], [1, 0]]


def test_forwards_with_start_and_end_bounds():
    q = HistoryQuery(limit=2, backwards=False, start=200, end=500)
    assert pages(log_of(3), q) == [[1, 2], [3, 4]]


def test_a_cursor_of_another_epoch_gives_an_empty_page():
    page = page_of("ep", log_of(2).entries(), HistoryQuery(cursor="old:3"))
    assert page.messages == [] and page.next_cursor is None


def test_an_exact_last_page_has_no_next():
    assert pages(log_of(2), HistoryQuery(limit=4)) == [[3, 2, 1, 0]]
