"""A visitor's runs outlive the Streamlit session that made them: a reload.

Streamlit gives every page load a new session and drops a session's
``st.cache_resource(scope="session")`` values the moment its websocket goes:
a reload, a phone that locked its screen or discarded the tab in the
background, a Wi-Fi blip.  The visitor's live run, rules comparison and
background sweep went with it.

Here they belong to a *tab*: a session holds its tab while it is connected
(:meth:`Tabs.claim`); when the session goes, the tab is parked for
:data:`PARK_S`, and the next session *of the same browser* that asks for a
tab takes it back (the reload, the reconnect), the most recently parked
first.  A parked tab that nobody takes back is released then: its slots'
``release()`` runs (a sweep stops).  The browser is known by
:func:`browser_key`: a digest of the XSRF token of the cookie Streamlit sets
once per browser.  Nothing goes in the URL: a token there (an earlier
version) made two history entries of one page switch, and travelled with
every link the visitor shared.  Without the cookie (XSRF protection off)
nothing is taken back.

The registry is plain Python; ``ui.resources`` ties it to the sessions.
"""
from __future__ import annotations

import binascii
import hashlib
import secrets
import threading
import time
from typing import Callable

STATE_KEY = "_tab"     # the session-state key of the token of the tab a session holds
PARK_S = 10 * 60       # a tab whose session went is kept this long for its visitor
MAX_PARKED = 16        # ... and at most this many parked tabs (the oldest is released)
CHECK_S = 60.0         # while tabs are held, whether their sessions are still there (s)


def browser_key(xsrf_cookie) -> str | None:
    """A digest of the browser's XSRF token (Streamlit's ``_streamlit_xsrf``
    cookie, ``2|mask|masked token|time``: re-masked on every page load, the
    token itself kept for the browser's life); None without one (XSRF
    protection off, AppTest)."""
    if not isinstance(xsrf_cookie, str) or not xsrf_cookie.strip("\"'"):
        return None
    value = xsrf_cookie.strip("\"'")
    token = value.encode()
    if value.startswith("2|"):
        try:
            _, mask, masked, _ = value.split("|")
            mask, masked = binascii.a2b_hex(mask), binascii.a2b_hex(masked)
        except (ValueError, binascii.Error):
            return None
        if not mask:
            return None
        token = bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked))
    return hashlib.sha256(b"resonance-lab tab\0" + token).hexdigest()


class Tab:
    """One visitor's slots (``name -> object with release()``), made on demand."""

    def __init__(self, token: str, browser: str | None = None):
        self.token, self.browser = token, browser
        self.holder: str | None = None      # the session holding it; None: parked
        self.parked_at = 0.0
        self.resumed = 0                    # times a new session took it back
        self._slots: dict[str, object] = {}
        self._lock = threading.Lock()

    def slot(self, name: str, make: Callable[[], object]):
        """The tab's slot ``name`` (made by ``make()`` the first time)."""
        with self._lock:
            if name not in self._slots:
                self._slots[name] = make()
            return self._slots[name]

    def get(self, name: str):
        """The tab's slot ``name``, or None where it was never made."""
        with self._lock:
            return self._slots.get(name)

    def empty(self) -> bool:
        with self._lock:
            return not self._slots

    def release(self) -> None:
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
        for s in slots:
            s.release()


class Tabs:
    """The server's tabs, by token.  ``connected(session_id)`` says whether a
    session still has its websocket (a holder that lost it without its
    release having run yet loses the tab to the new session)."""

    def __init__(self, park_s: float = PARK_S, max_parked: int = MAX_PARKED,
                 connected: Callable[[str], bool] = lambda sid: True,
                 clock: Callable[[], float] = time.monotonic):
        self.park_s, self.max_parked = park_s, max_parked
        self._connected, self._clock = connected, clock
        self._tabs: dict[str, Tab] = {}
        self._timer: threading.Timer | None = None
        self._timer_at = 0.0
        self._lock = threading.Lock()

    def claim(self, session_id: str, browser: str | None,
              token: str | None = None) -> tuple[Tab, bool]:
        """The tab for ``session_id`` of ``browser`` (:func:`browser_key`):
        the one ``token`` names (the session's own, after a reconnect) or
        else the browser's most recently parked one, if it is that browser's
        and parked or its holder gone (returns it and True: resumed); else a
        new tab (False).  ``browser`` None takes nothing back."""
        with self._lock:
            expired = self._expire()

            def free(t):
                return t.browser == browser and (
                    t.holder in (None, session_id) or not self._connected(t.holder))

            tab = self._tabs.get(token) if isinstance(token, str) else None
            if tab is None or not free(tab):
                parked = [t for t in self._tabs.values()
                          if browser is not None and t.holder is None and free(t)]
                tab = max(parked, key=lambda t: t.parked_at, default=None)
            resumed = tab is not None and tab.holder != session_id
            if tab is None:
                while (token := secrets.token_urlsafe(8)) in self._tabs:
                    pass
                tab = self._tabs[token] = Tab(token, browser)
            elif resumed:
                tab.resumed += 1
            tab.holder = session_id
            self._schedule()
        for t in expired:
            t.release()
        return tab, resumed

    def park(self, tab: Tab, session_id: str) -> None:
        """``session_id`` went (its session resources were released): keep its
        tab for :attr:`park_s`, unless another session took it already."""
        with self._lock:
            if self._tabs.get(tab.token) is not tab or tab.holder != session_id:
                return
            tab.holder, tab.parked_at = None, self._clock()
        self.expire()

    def expire(self) -> int:
        """Release the tabs parked longer than :attr:`park_s` (and the oldest
        beyond :attr:`max_parked`); returns how many.  While there are tabs a
        timer calls it again: when the next parked one is due, and every
        :data:`CHECK_S` while some are held (a holder that went without its
        release is parked then), so a sweep left in a closed tab stops even
        if no visitor comes."""
        with self._lock:
            expired = self._expire()
            self._schedule()
        for t in expired:
            t.release()
        return len(expired)

    def _schedule(self) -> None:
        """(Under the lock.)  The timer for the earliest thing due, unless
        one is set for sooner."""
        if not self._tabs:
            return
        now = self._clock()
        wait = max(min(t.parked_at + self.park_s - now if t.holder is None else CHECK_S
                       for t in self._tabs.values()), 0.0) + 0.5
        if self._timer is not None:
            if self._timer_at <= now + wait:
                return
            self._timer.cancel()
        self._timer, self._timer_at = threading.Timer(wait, self._fire), now + wait
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._timer is threading.current_thread():   # (not one replaced meanwhile)
                self._timer = None
        self.expire()

    def _expire(self) -> list[Tab]:
        now = self._clock()
        for t in list(self._tabs.values()):
            if t.holder is not None and not self._connected(t.holder):
                # a session that went without its release (it claimed the tab again
                # while Streamlit disconnected it): parked from now
                t.holder, t.parked_at = None, now
            if t.holder is None and t.empty():    # nothing to keep: never taken back
                del self._tabs[t.token]
        parked = sorted((t for t in self._tabs.values() if t.holder is None),
                        key=lambda t: t.parked_at)
        old = [t for t in parked if now - t.parked_at >= self.park_s]
        young = [t for t in parked if now - t.parked_at < self.park_s]
        old += young[:max(0, len(young) - self.max_parked)]
        for t in old:
            del self._tabs[t.token]
        return old

    def counts(self) -> dict:
        """``{"held": n, "parked": m}``."""
        with self._lock:
            parked = sum(t.holder is None for t in self._tabs.values())
            return {"held": len(self._tabs) - parked, "parked": parked}


def session_connected(session_id: str) -> bool:
    """Whether Streamlit's runtime still has ``session_id`` connected (True
    where it cannot say: the tab then stays with its holder)."""
    try:
        from streamlit.runtime import Runtime

        return Runtime.instance().is_active_session(session_id)
    except Exception:      # no runtime (AppTest, scripts) or its API moved
        return True


TABS = Tabs(connected=session_connected)
