"""The console's security settings in one place: session cookies, CSRF
tokens, login throttling per address, and the headers of every answer.

- Sessions: a random 256-bit token in a cookie that is HttpOnly and
  SameSite=Strict, Path=/, and under TLS Secure with the __Host- prefix
  (so no other site, subdomain or plain-HTTP page can set it). The store
  keeps only the token's SHA-256 (store_console.token_hash). A session
  ends after `idle_s` without a request from the operator (the live
  stream does not count: an unattended screen is signed out and says so)
  and after `max_s` in any case (a shift); on disabling an account or
  changing its password.
- CSRF: every state change is a POST carrying the session's token (a
  hidden form field, or the X-CSRF-Token header from the page's script),
  compared in constant time; a POST whose Origin names another site is
  refused before that. The login form, before any session, uses a
  double-submit token in its own SameSite=Strict cookie.
- Throttling: per browser address, at most `per_addr` failed logins in
  `window_s`; past that every login from it is refused (429) until the
  window moves on. Per account: receiver/users.py locks it after 5
  failures in a row for 15 minutes.
- Headers: a Content-Security-Policy with no inline script and no
  framing (frame-ancestors 'none'), images from the console and the tile
  server only, X-Frame-Options DENY, nosniff, a referrer only to the console itself (with "no-referrer" a browser sends
  "Origin: null" on its own forms, and the Origin check could not tell them
  from a foreign page), no caching of
  pages, and HSTS under TLS.

Must stay in sync with: docs/console.md (security settings), app.py.
"""

import collections
import hmac
import secrets
import urllib.parse

COOKIE = "panic_session"
COOKIE_TLS = "__Host-panic_session"
LOGIN_COOKIE = "panic_login"
LOGIN_COOKIE_TLS = "__Host-panic_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


class Settings:
    def __init__(self, tls=False, idle_s=900.0, max_s=12 * 3600.0, per_addr=20, window_s=600.0, tile_url=None):
        self.tls = tls
        self.idle_s = idle_s
        self.max_s = max_s
        self.per_addr = per_addr
        self.window_s = window_s
        self.tile_url = tile_url

    @property
    def cookie(self):
        return COOKIE_TLS if self.tls else COOKIE

    @property
    def login_cookie(self):
        return LOGIN_COOKIE_TLS if self.tls else LOGIN_COOKIE

    def cookie_attrs(self, max_age=None):
        a = {"httponly": True, "samesite": "Strict", "path": "/", "secure": self.tls}
        if max_age is not None:
            a["max_age"] = int(max_age)
        return a


def new_token():
    return secrets.token_urlsafe(32)


def same(a, b):
    """Constant-time equality of two tokens (either may be None)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def tile_source(tile_url):
    """The CSP source that lets the page load tiles from `tile_url`
    ('https://tile.openstreetmap.org/{z}/{x}/{y}.png' -> its origin; a
    '{s}' subdomain becomes a wildcard), or '' when there is none."""
    if not tile_url:
        return ""
    u = urllib.parse.urlsplit(tile_url.replace("{s}", "s"))
    if u.scheme not in ("http", "https") or not u.hostname:
        return ""
    host = u.netloc
    if "{s}" in tile_url.split("/")[2]:
        host = "*." + host.split(".", 1)[1] if "." in host else host
    return "%s://%s" % (u.scheme, host)


def headers(settings):
    """The headers every answer carries."""
    img = "'self' data:"
    ts = tile_source(settings.tile_url)
    if ts:
        img += " " + ts
    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src %s; connect-src 'self'; "
           "font-src 'self'; media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'" % img)
    h = {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    }
    if settings.tls:
        h["Strict-Transport-Security"] = "max-age=31536000"
    return h


def origin_ok(origin, host, tls):
    """A POST's Origin header (when the browser sends one) must be the
    console's own origin."""
    if not origin:
        return True
    if origin == "null":
        return False
    u = urllib.parse.urlsplit(origin)
    return u.netloc == host and u.scheme == ("https" if tls else "http")


class Throttle:
    """Failed logins per address in a sliding window (in memory: each
    console process counts its own; the per-account lockout is in the
    store and holds across processes)."""

    def __init__(self, per_addr, window_s, max_addrs=10000):
        self.per_addr = per_addr
        self.window_s = window_s
        self.max_addrs = max_addrs
        self._fails = collections.OrderedDict()  # addr -> deque of times

    def blocked(self, addr, now):
        q = self._fails.get(addr)
        if q is None:
            return False
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[addr]
            return False
        return len(q) >= self.per_addr

    def failed(self, addr, now):
        q = self._fails.get(addr)
        if q is None:
            if len(self._fails) >= self.max_addrs:
                self._fails.popitem(last=False)
            q = self._fails[addr] = collections.deque()
        else:
            self._fails.move_to_end(addr)
        q.append(now)
