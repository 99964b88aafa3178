"""DirectoryKeeper against the in-memory directory (no Redis, no Ray): outages are told once,
and a directory that lost its data gets its fencing counter back."""
from types import SimpleNamespace
from unittest.mock import MagicMock

from actors.commits import DirectoryKeeper
from actors.memory_directory import InMemoryDirectory


def _scheduler(directory):
    events = []
    s = SimpleNamespace(directory=directory, epoch=directory.acquire_epoch(), core=MagicMock(owners={}),
                        sessions=MagicMock(), event=lambda fmt, *args: events.append(fmt % args))
    return s, events


def test_an_outage_is_told_once_and_its_end_too():
    d = InMemoryDirectory()
    s, events = _scheduler(d)
    keeper = DirectoryKeeper(s)
    d.reachable = False
    keeper.check()
    keeper.check()
    assert keeper.down and len(events) == 1 and "unreachable" in events[0] and d.where in events[0]
    d.reachable = True
    keeper.check()
    assert not keeper.down and events[1] == f"Redis at {d.where} is back"


def test_a_directory_that_lost_its_data_gets_the_epoch_back():
    d = InMemoryDirectory()
    d.acquire_epoch()
    s, events = _scheduler(d)
    d.lose_data()                              # restarted empty: the fencing counter fell to 0
    DirectoryKeeper(s).check()
    assert d.current_epoch() == s.epoch and len(events) == 1 and "lost data" in events[0]
    assert d.acquire_epoch() == s.epoch + 1    # an older scheduler's epoch stays fenced off
