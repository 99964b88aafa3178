from rwttt_ray.core.events import EventLog


def test_each_line_is_read_once_in_order():
    log = EventLog(keep=3)
    assert log.since(0) == (0, [])
    for i in range(4):
        log.add(f"e{i}")
    seq, lines = log.since(0)
    assert (seq, lines) == (4, ["e1", "e2", "e3"])      # the oldest fell out
    log.add("e4")
    assert log.since(seq) == (5, ["e4"])
    assert log.since(99) == (5, ["e2", "e3", "e4"])     # a cursor of another log: all kept lines
