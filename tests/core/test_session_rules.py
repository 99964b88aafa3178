"""The session rules without Ray (rwttt_ray/core/session.py): turn start and end, the cut turn's
way back to the last kept version, keeping, replay after a worker loss, leases, expiry, and the
restore after a scheduler restart."""
import pytest

from rwttt_ray.core.session import SessionBook, SessionRecord


def book_with_session(owner="s", kept=(), ttl=10.0, now=100.0):
    book = SessionBook(default_ttl_s=60.0)
    book.open(owner, "t", now, ttl, kept=list(kept))
    return book


def test_a_bad_ttl_is_refused():
    with pytest.raises(ValueError):
        SessionBook(0)


def test_the_record_is_keyword_only():
    with pytest.raises(TypeError):
        SessionRecord("s", "t")     # noqa: the fields are named


def test_a_turn_runs_until_closed_and_a_session_idles_from_its_end():
    book = book_with_session()
    book.start_turn("s", "t", now=105.0, lease_until=50.0)
    rec = book.get("s")
    assert not rec.closed and rec.started == 105.0 and rec.lease_until == 50.0
    assert book.is_busy("s", held=True) and not book.is_busy("s", held=False)
    assert book.busy(["x", "s"]) == ["x", "s"]          # an owner with no record is busy (a bare submit)
    book.close("s", now=120.0)
    assert rec.closed and rec.last_used == 120.0 and rec.expires_at() == 130.0
    assert book.busy(["s"]) == []


def test_a_one_shot_gets_a_record_that_is_no_session():
    book = SessionBook()
    book.start_turn("c", "t", now=1.0)
    assert book.get("c") is not None and not book.is_session("c") and book.session("c") is None
    assert book.sessions() == [] and book.of_tenant("t") == []
    rec = book.close("c", now=9.0)
    assert rec.closed and rec.last_used == 0.0            # a one-shot does not idle
    assert book.close("bare", now=9.0).session is False  # closing an owner never started makes its record


def test_a_good_session_turn_closes_when_its_end_is_kept_a_failed_one_at_once():
    book = book_with_session()
    book.start_turn("s", "t", now=1.0)
    assert not book.closes_on_tokens("s", finished=True, failed=False)
    assert book.closes_on_tokens("s", finished=True, failed=True)
    assert not book.closes_on_tokens("s", finished=False, failed=False)
    book.start_turn("c", "t", now=1.0)
    assert book.closes_on_tokens("c", finished=True, failed=False)
    assert book.on_kept("s", 3, held=True) and book.get("s").kept == [3]
    book.close("s", now=2.0)
    assert not book.on_kept("s", 4, held=True) and book.get("s").kept == [3]   # a cut turn is no rollback point
    assert not book.closes_on_tokens("s", finished=True, failed=True)          # closed already


def test_a_turn_being_cut_stays_busy_until_the_cut_is_done():
    book = book_with_session(kept=[1, 3])
    book.start_turn("s", "t", now=1.0)
    assert book.begin_cut("s") == 3
    assert not book.closes_on_tokens("s", finished=True, failed=True)   # its last phase does not end it
    assert not book.on_kept("s", 5, held=True) and book.get("s").kept == [1, 3]   # nor is it kept
    assert book.is_busy("s", held=True)
    book.close("s", now=2.0)
    assert not book.is_busy("s", held=True) and not book.get("s").cutting
    empty = book_with_session("e")
    book.records["e"] = empty.get("e")
    book.start_turn("e", "t", now=1.0)
    assert book.begin_cut("e") is None
    book.end_cut("e")
    assert not book.get("e").cutting and book.closes_on_tokens("e", finished=True, failed=True)


def test_keeping_fails_or_the_owner_is_gone():
    book = book_with_session()
    book.start_turn("s", "t", now=1.0)
    assert book.on_kept("s", None, held=True) and book.get("s").kept == []
    book.start_turn("s", "t", now=1.0)
    assert not book.on_kept("s", 2, held=False)
    assert not book.on_kept("nobody", 2, held=True)


def test_a_cut_turn_goes_back_to_the_last_kept_version_and_a_rollback_forgets_later_ones():
    book = book_with_session(kept=[1, 3, 5])
    rec = book.get("s")
    assert rec.cut_point() == 5
    rec.forget_after(3)
    assert rec.kept == [1, 3] and rec.cut_point() == 3
    assert book_with_session().get("s").cut_point() is None      # nothing kept: back to empty


def test_after_a_worker_loss_only_an_idle_session_is_kept_again():
    book = book_with_session(kept=[2])
    book.open("busy", "t", 0.0, kept=[1])
    book.start_turn("busy", "t", now=1.0)
    book.close("s", now=1.0)
    book.replaying(["s", "busy", "nobody"])
    assert book.get("s").kept == [] and book.get("s").rekeep
    assert book.get("busy").kept == [] and not book.get("busy").rekeep
    assert not book.on_kept("s", 7, held=True)              # the replayed idle state: listed, no close
    assert book.get("s").kept == [7] and not book.get("s").rekeep
    book.replaying(["s"])
    book.start_turn("s", "t", now=2.0)                       # a new turn: its end is what gets kept
    assert not book.get("s").rekeep


def test_leases_lapse_unless_renewed_and_end_when_the_end_is_read():
    book = SessionBook()
    book.start_turn("a", "t", now=0.0, lease_until=10.0)
    book.start_turn("b", "t", now=0.0, lease_until=10.0)
    book.start_turn("c", "t", now=0.0)
    book.renew(["a", "c", "nobody"], until=30.0)
    assert book.get("c").lease_until is None                 # no lease: nothing to renew
    assert book.lapsed(20.0) == ["b"] and book.get("b").lease_until is None
    assert book.lapsed(20.0) == []                           # told once
    book.end_lease("a")
    assert book.lapsed(100.0) == []


def test_only_idle_sessions_expire_after_their_ttl():
    book = book_with_session(ttl=10.0, now=100.0)
    book.open("other", "t", 100.0)                           # the default ttl: 60 s
    book.start_turn("c", "t", now=100.0)                     # a one-shot never expires
    assert book.expired(109.0, held=set()) == []
    assert book.expired(110.0, held=set()) == ["s"]
    book.start_turn("s", "t", now=105.0)
    assert book.expired(200.0, held={"s"}) == ["other"]     # a turn running keeps it
    assert sorted(book.expired(200.0, held=set())) == ["other", "s"]   # its state is gone: nothing runs


def test_a_fork_or_an_adopted_session_is_idle_at_its_version():
    book = book_with_session()
    book.open("child", "t", 5.0, book.get("s").ttl_s)
    rec = book.idle_at("child", 4)
    assert rec.closed and rec.kept == [4] and rec.ttl_s == 10.0


def test_the_restore_after_a_scheduler_restart():
    book = SessionBook()
    run = book.restore("s", "t", session=True, kept=[1, 2], running=True, now=50.0)
    assert run.session and run.kept == [1, 2] and run.started == 50.0 and not run.closed
    idle = book.restore("c", "t", session=False, kept=[], running=False, now=50.0)
    assert not idle.session and idle.started is None
    assert [r.owner_id for r in book.of_tenant("t")] == ["s"]


def test_listing_is_per_tenant_in_creation_order():
    book = SessionBook()
    book.open("b", "t", 2.0)
    book.open("a", "t", 1.0)
    book.open("z", "u", 0.0)
    assert [r.owner_id for r in book.of_tenant("t")] == ["a", "b"]
    book.remove("a")
    book.remove("a")
    assert [r.owner_id for r in book.of_tenant("t")] == ["b"]
