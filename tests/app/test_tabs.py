"""ui.tabs: a visitor's runs outlive the Streamlit session (a reload, a
reconnect), are not shared with a copied link, and are released once parked
too long or when too many are parked."""
from __future__ import annotations

import threading

import pytest

from ui import tabs


class Slot:
    def __init__(self):
        self.released = 0
        self.run = object()

    def release(self):
        self.released += 1


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def reg():
    clock = Clock()
    connected = set()
    r = tabs.Tabs(park_s=600, max_parked=3, connected=lambda sid: sid in connected, clock=clock)
    r.clock, r.connected_ids = clock, connected
    return r


def _visit(reg, token, sid):
    """Session ``sid`` connects asking for ``token``."""
    reg.connected_ids.add(sid)
    return reg.claim(token, sid)


def _leave(reg, tab, sid):
    """Session ``sid`` disconnects (Streamlit releases its session resources)."""
    reg.connected_ids.discard(sid)
    reg.park(tab, sid)


def test_a_reload_takes_the_run_back_and_only_once():
    reg = tabs.Tabs(park_s=600, connected=lambda sid: sid == "s2")
    tab, resumed = reg.claim(None, "s1")
    assert not resumed and tabs.valid_token(tab.token)
    slot = tab.slot("run", Slot)
    assert tab.slot("run", Slot) is slot           # made once
    reg.park(tab, "s1")                              # the reload: s1's websocket goes
    again, resumed = reg.claim(tab.token, "s2")      # the new page load, same URL
    assert again is tab and resumed and again.slot("run", Slot) is slot
    assert slot.released == 0 and tab.resumed == 1
    # s1's release arriving late (after s2 took the tab) leaves it with s2
    reg.park(tab, "s1")
    assert tab.holder == "s2" and reg.counts() == {"held": 1, "parked": 0}


def test_a_copied_link_gets_its_own_tab(reg):
    tab, _ = _visit(reg, None, "owner")
    tab.slot("run", Slot)
    other, resumed = _visit(reg, tab.token, "visitor")
    assert other is not tab and not resumed and other.token != tab.token
    assert tab.holder == "owner" and other.empty()


def test_a_holder_whose_release_has_not_run_yet_loses_the_tab(reg):
    tab, _ = _visit(reg, None, "s1")
    tab.slot("run", Slot)
    reg.connected_ids.discard("s1")                 # disconnected, not yet released
    again, resumed = _visit(reg, tab.token, "s2")
    assert again is tab and resumed and tab.holder == "s2"


def test_a_reconnect_of_the_same_session_keeps_its_tab(reg):
    tab, _ = _visit(reg, None, "s1")
    slot = tab.slot("run", Slot)
    assert _visit(reg, tab.token, "s1") == (tab, False)      # still held: nothing to say
    _leave(reg, tab, "s1")
    again, resumed = _visit(reg, tab.token, "s1")
    assert again is tab and resumed and slot.released == 0


def test_parked_tabs_expire_and_release_their_slots(reg):
    tab, _ = _visit(reg, None, "s1")
    slot = tab.slot("sweep", Slot)
    _leave(reg, tab, "s1")
    reg.clock.t += 599
    assert reg.expire() == 0 and slot.released == 0
    reg.clock.t += 2
    assert reg.expire() == 1 and slot.released == 1
    # its token now names nothing: a late reload starts over (same token in the URL)
    again, resumed = _visit(reg, tab.token, "s2")
    assert again is not tab and not resumed and again.token == tab.token
    assert again.empty()


def test_the_oldest_parked_tabs_go_beyond_max_parked(reg):
    slots = []
    for i in range(5):
        tab, _ = _visit(reg, None, f"s{i}")
        slots.append(tab.slot("run", Slot))
        reg.clock.t += 1
        _leave(reg, tab, f"s{i}")
    assert [s.released for s in slots] == [1, 1, 0, 0, 0]
    assert reg.counts() == {"held": 0, "parked": 3}


def test_an_empty_tab_is_not_kept(reg):
    tab, _ = _visit(reg, None, "s1")
    _leave(reg, tab, "s1")
    assert reg.counts() == {"held": 0, "parked": 0}


@pytest.mark.parametrize("token", ["", "short", "x" * 40, "bad token!", "../../etc", 7, None])
def test_a_malformed_token_is_not_looked_up(reg, token):
    tab, resumed = _visit(reg, token, "s1")
    assert not resumed and tabs.valid_token(tab.token) and tab.token != token


def test_the_timer_releases_a_parked_tab_without_a_visitor():
    done = threading.Event()

    class Sweep(Slot):
        def release(self):
            super().release()
            done.set()

    reg = tabs.Tabs(park_s=0.2)
    tab, _ = reg.claim(None, "s1")
    sweep = tab.slot("sweep", Sweep)
    reg.park(tab, "s1")
    assert done.wait(5.0) and sweep.released == 1
    assert reg.counts() == {"held": 0, "parked": 0}


def test_claims_from_many_threads_give_one_holder(reg):
    tab, _ = _visit(reg, None, "s0")
    tab.slot("run", Slot)
    _leave(reg, tab, "s0")
    got = []
    barrier = threading.Barrier(8)

    def visit(i):
        barrier.wait()
        got.append(_visit(reg, tab.token, f"s{i + 1}"))

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r for _, r in got) == 1                       # one took it back ...
    assert len({t.token for t, _ in got}) == 8               # ... the others got their own
