"""ui.tabs: a visitor's runs outlive the Streamlit session (a reload, a
reconnect), only for the same browser, and are released once parked too long
or when too many are parked."""
from __future__ import annotations

import threading

import pytest

from ui import tabs


class Slot:
    def __init__(self):
        self.released = 0

    def release(self):
        self.released += 1


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _xsrf(token: bytes, mask: bytes, ts: int = 1700000000) -> str:
    """Streamlit's ``_streamlit_xsrf`` cookie (version 2): the token XOR a 4-byte mask."""
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(token))
    return f"2|{mask.hex()}|{masked.hex()}|{ts}"


ME, YOU = tabs.browser_key(_xsrf(b"me" * 8, b"abcd")), tabs.browser_key(_xsrf(b"yo" * 8, b"abcd"))


@pytest.fixture
def reg():
    clock = Clock()
    connected = set()
    r = tabs.Tabs(park_s=600, max_parked=3, connected=lambda sid: sid in connected, clock=clock)
    r.clock, r.connected_ids = clock, connected
    return r


def _visit(reg, sid, browser=ME, token=None):
    """Session ``sid`` of ``browser`` connects (and asks for the tab ``token``)."""
    reg.connected_ids.add(sid)
    return reg.claim(sid, browser, token)


def _leave(reg, tab, sid):
    """Session ``sid`` disconnects (Streamlit releases its session resources)."""
    reg.connected_ids.discard(sid)
    reg.park(tab, sid)


def test_the_browser_key_is_the_token_under_any_mask():
    token = bytes(range(16))
    keys = {tabs.browser_key(_xsrf(token, m)) for m in (b"\0\0\0\0", b"abcd", b"\xff\x01\x02\x03")}
    assert len(keys) == 1 and None not in keys                # re-masked each page load
    assert tabs.browser_key(_xsrf(bytes(16), b"abcd")) not in keys    # another browser
    assert tabs.browser_key(_xsrf(token, b"abcd", ts=1)) in keys      # the time is not the token
    assert tabs.browser_key('"' + _xsrf(token, b"wxyz") + '"') in keys  # quoted as sent
    assert tabs.browser_key(token.hex()) == tabs.browser_key(token.hex())   # version 1: as is
    for bad in (None, "", '""', "2|zz|00|1", "2|abcd", "2||00|1", 7):
        assert tabs.browser_key(bad) is None, bad
    assert token.hex() not in next(iter(keys))                # a digest, not the secret


def test_a_reload_takes_the_run_back_and_only_once(reg):
    tab, resumed = _visit(reg, "s1")
    assert not resumed and tab.browser == ME
    slot = tab.slot("run", Slot)
    assert tab.slot("run", Slot) is slot           # made once
    _leave(reg, tab, "s1")                          # the reload: s1's websocket goes
    again, resumed = _visit(reg, "s2")              # the new page load, same browser
    assert again is tab and resumed and again.slot("run", Slot) is slot
    assert slot.released == 0 and tab.resumed == 1
    reg.park(tab, "s1")                             # s1's release arriving late: s2 keeps it
    assert tab.holder == "s2" and reg.counts() == {"held": 1, "parked": 0}
    other, resumed = _visit(reg, "s3")              # another tab of the browser: its own
    assert other is not tab and not resumed


def test_another_browser_never_takes_the_run(reg):
    tab, _ = _visit(reg, "s1")
    slot = tab.slot("run", Slot)
    _leave(reg, tab, "s1")                                  # the owner went
    theirs, resumed = _visit(reg, "s2", YOU, token=tab.token)   # even naming it
    assert theirs is not tab and not resumed and theirs.browser == YOU
    anon, resumed = _visit(reg, "s3", None)                 # no cookie: nothing taken back
    assert anon is not tab and not resumed
    _leave(reg, anon, "s3")
    again, resumed = _visit(reg, "s4", None)
    assert again is not anon and not resumed
    mine, resumed = _visit(reg, "s5", tabs.browser_key(_xsrf(b"me" * 8, b"wxyz")))
    assert mine is tab and resumed and slot.released == 0  # the owner, its cookie re-masked


def test_the_most_recently_parked_tab_of_the_browser_comes_back_first(reg):
    a, _ = _visit(reg, "a")
    b, _ = _visit(reg, "b")
    for t in (a, b):
        t.slot("run", Slot)
    _leave(reg, a, "a")
    reg.clock.t += 1
    _leave(reg, b, "b")
    assert _visit(reg, "b2") == (b, True)
    assert _visit(reg, "a2") == (a, True)


def test_a_reconnect_takes_its_own_tab_even_with_a_later_one_parked(reg):
    mine, _ = _visit(reg, "s1")
    other, _ = _visit(reg, "s2")
    for t in (mine, other):
        t.slot("run", Slot)
    _leave(reg, mine, "s1")
    reg.clock.t += 1
    _leave(reg, other, "s2")                        # parked later
    assert _visit(reg, "s1", token=mine.token) == (mine, True)      # its session state's token
    assert _visit(reg, "s1", token=mine.token) == (mine, False)     # held already: nothing new


def test_a_connected_holder_keeps_its_tab(reg):
    tab, _ = _visit(reg, "s1")
    tab.slot("run", Slot)
    other, resumed = _visit(reg, "s2", token=tab.token)
    assert other is not tab and not resumed and tab.holder == "s1"


def test_a_holder_whose_release_has_not_run_yet_loses_the_tab(reg):
    tab, _ = _visit(reg, "s1")
    tab.slot("run", Slot)
    reg.connected_ids.discard("s1")                 # disconnected, its release not yet run
    again, resumed = _visit(reg, "s2", token=tab.token)
    assert again is tab and resumed and tab.holder == "s2"


def test_a_held_tab_whose_session_went_without_its_release_is_parked(reg):
    tab, _ = _visit(reg, "s1")
    slot = tab.slot("run", Slot)
    reg.connected_ids.discard("s1")          # gone; its release never came (claimed again late)
    reg.expire()
    assert tab.holder is None and reg.counts() == {"held": 0, "parked": 1}
    reg.clock.t += 601
    assert reg.expire() == 1 and slot.released == 1


def test_parked_tabs_expire_and_release_their_slots(reg):
    tab, _ = _visit(reg, "s1")
    slot = tab.slot("sweep", Slot)
    _leave(reg, tab, "s1")
    reg.clock.t += 599
    assert reg.expire() == 0 and slot.released == 0
    reg.clock.t += 2
    assert reg.expire() == 1 and slot.released == 1
    again, resumed = _visit(reg, "s2", token=tab.token)      # too late: a new tab
    assert again is not tab and not resumed and again.empty()


def test_the_oldest_parked_tabs_go_beyond_max_parked(reg):
    slots = []
    for i in range(5):
        tab, _ = _visit(reg, f"s{i}", browser=f"b{i}")
        slots.append(tab.slot("run", Slot))
        reg.clock.t += 1
        _leave(reg, tab, f"s{i}")
    assert [s.released for s in slots] == [1, 1, 0, 0, 0]
    assert reg.counts() == {"held": 0, "parked": 3}


def test_an_empty_tab_is_not_kept(reg):
    tab, _ = _visit(reg, "s1")
    _leave(reg, tab, "s1")
    assert reg.counts() == {"held": 0, "parked": 0}


def test_the_timer_releases_a_parked_tab_without_a_visitor():
    done = threading.Event()

    class Sweep(Slot):
        def release(self):
            super().release()
            done.set()

    reg = tabs.Tabs(park_s=0.2)
    tab, _ = reg.claim("s1", ME)
    sweep = tab.slot("sweep", Sweep)
    reg.park(tab, "s1")
    assert done.wait(5.0) and sweep.released == 1
    assert reg.counts() == {"held": 0, "parked": 0}


def test_claims_from_many_threads_give_one_holder(reg):
    tab, _ = _visit(reg, "s0")
    tab.slot("run", Slot)
    _leave(reg, tab, "s0")
    got = []
    barrier = threading.Barrier(8)

    def visit(i):
        barrier.wait()
        got.append(_visit(reg, f"s{i + 1}"))

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r for _, r in got) == 1                       # one took it back ...
    assert len({t.token for t, _ in got}) == 8               # ... the others got their own


def test_an_empty_tab_claimed_by_a_dying_session_never_hides_the_run(reg):
    tab, _ = _visit(reg, "s1")
    slot = tab.slot("run", Slot)
    _leave(reg, tab, "s1")                          # the reload: parked
    mine, _ = _visit(reg, "s2")                     # the new page takes it back ...
    assert mine is tab
    dead, _ = reg.claim("s1", ME)                   # ... while the old script claims again
    assert dead is not tab and dead.empty()
    _leave(reg, mine, "s2")                         # later the page goes too
    reg.expire()                                    # s1 is not connected: its empty tab goes
    assert reg.counts() == {"held": 0, "parked": 1}
    assert _visit(reg, "s3") == (tab, True) and slot.released == 0


def test_the_timer_parks_and_releases_a_tab_whose_session_went_without_a_visitor(monkeypatch):
    """No release came and no visitor claims or parks: the timer's check
    (every CHECK_S while tabs are held) parks the tab, and then releases it."""
    monkeypatch.setattr(tabs, "CHECK_S", 0.1)
    done = threading.Event()

    class Sweep(Slot):
        def release(self):
            super().release()
            done.set()

    connected = {"s1"}
    reg = tabs.Tabs(park_s=0.3, connected=lambda sid: sid in connected)
    tab, _ = reg.claim("s1", ME)
    sweep = tab.slot("sweep", Sweep)
    assert not done.wait(0.5) and reg.counts() == {"held": 1, "parked": 0}   # still there
    connected.discard("s1")                      # gone, its release never came
    assert done.wait(5.0) and sweep.released == 1
    assert reg.counts() == {"held": 0, "parked": 0}
