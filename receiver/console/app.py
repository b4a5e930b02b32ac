"""The operator console's web application (aiohttp), and how it runs:
alone (`panic receiver console`) or inside `serve` (`--console`).

Owns: routes, who may do what (receiver/users.py roles), form checking,
and turning the store's answers into pages (views.py, templates/). Talks
to the store only through its methods (store.py, store_console.py) and
the core's operator_command, on the console's own connection
(live.DbWorker). Never touches devices' keys: the console opens the store
without the master key.

Every answer carries security.headers(); every request but the login page
and /static/ (the console's own code and styles, no data) needs a valid
session; every POST needs the session's CSRF token. Bad input (a field
missing, too long, not a number; an unknown incident) is answered 400 or
404 with one line saying what was wrong, counted in `counters`, never a
crash.

Routes:
  GET  /login, POST /login, POST /logout
  GET  /                       the queue
  GET  /queue/rows?ids=        queue rows (the page's script asks on events)
  GET  /events                 Server-Sent Events (live.py)
  GET  /incident/{id}          map, state, actions, timeline
  GET  /incident/{id}/status, /timeline, /map.json   fragments for the script
  GET  /incident/{id}/summary  the printable one-page summary for the police
  POST /incident/{id}/{claim, release, reassign, note, escalate, close,
        reopen, listen-in, track, stand-down}
  GET  /devices, /person?ref=, /stats, /stats.csv, /audit and /counters
       (supervisor)
  GET  /admin/users, POST /admin/users, POST /admin/users/{name}/{disable,
        enable, passwd} (admin)

Must stay in sync with: templates/, static/console.js, docs/console.md,
store_console.py, users.py.
"""

import asyncio
import collections
import logging
import os
import ssl
import time
import urllib.parse

import jinja2
from aiohttp import web

from receiver import core, estimate, users
from receiver import store as S
from receiver import store_console as SC
from receiver.console import live, position, security, views
from receiver.errors import ReceiverError

log = logging.getLogger("receiver.console")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
MAX_BODY = 16 * 1024
NOTE_MAX = 2000
FIELD_MAX = 120
ROWS_MAX = 200
ACTIONS = ("claim", "release", "reassign", "note", "escalate", "close", "reopen", "listen-in", "track", "stand-down")
SUPERVISOR_ONLY = ("reassign", "reopen")
OWNER_ACTIONS = ("note", "escalate", "close", "listen-in", "track", "stand-down")


class Config:
    def __init__(self, tile_url=DEFAULT_TILES, claim_cue_s=10.0, progress_cue_s=120.0, queue_days=30,
                 poll_s=0.1, idle_s=900.0, max_session_s=12 * 3600.0, tls=False, login_per_addr=20,
                 login_window_s=600.0):
        self.tile_url = tile_url or ""
        self.claim_cue_s = claim_cue_s
        self.progress_cue_s = progress_cue_s
        self.queue_days = queue_days
        self.poll_s = poll_s
        self.security = security.Settings(tls=tls, idle_s=idle_s, max_s=max_session_s, per_addr=login_per_addr,
                                          window_s=login_window_s, tile_url=self.tile_url)


class BadInput(Exception):
    """A request we cannot take: status, one line."""

    def __init__(self, status, text, counter="bad request"):
        super().__init__(text)
        self.status = status
        self.counter = counter


KEY_CONSOLE = web.AppKey("console", object)


class Console:
    """The application's state: config, store worker, hub, templates."""

    def __init__(self, store, config, clock=time.time):
        self.config = config
        self.clock = clock
        self.db = live.DbWorker(store)
        self.hub = live.Hub(self.db, config.poll_s)
        self.throttle = security.Throttle(config.security.per_addr, config.security.window_s)
        self.counters = collections.Counter()
        self.jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                                        autoescape=True, trim_blocks=True, lstrip_blocks=True)
        self.jinja.filters.update(t=views.fmt_time, age=views.fmt_age, outcome=lambda o: views.OUTCOME_WORDS.get(o, o),
                                  dms=views.dms, source=views.source_words)
        self.jinja.globals["stale_s"] = estimate.STALE_S
        self._headers = security.headers(config.security)
        self.app = self._make_app()
        self.runner = None
        self.addresses = []

    # ------------------------------------------------------------ lifecycle

    def _make_app(self):
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app[KEY_CONSOLE] = self
        r = app.router
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/", self.queue)
        r.add_get("/queue/rows", self.queue_rows)
        r.add_get("/events", self.events)
        r.add_get("/incident/{id}", self.incident)
        r.add_get("/incident/{id}/status", self.incident_status)
        r.add_get("/incident/{id}/timeline", self.incident_timeline)
        r.add_get("/incident/{id}/map.json", self.incident_map)
        r.add_get("/incident/{id}/summary", self.summary)
        r.add_post("/incident/{id}/{action}", self.incident_action)
        r.add_get("/devices", self.devices)
        r.add_get("/person", self.person)
        r.add_get("/stats", self.stats)
        r.add_get("/stats.csv", self.stats_csv)
        r.add_get("/audit", self.audit)
        r.add_get("/counters", self.counters_json)
        r.add_get("/admin/users", self.admin_users)
        r.add_post("/admin/users", self.admin_user_add)
        r.add_post("/admin/users/{name}/{action}", self.admin_user_action)
        r.add_static("/static/", os.path.join(HERE, "static"), append_version=False)
        return app

    async def start(self, host, port, ssl_context=None):
        await self.hub.start()
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, ssl_context=ssl_context, backlog=128)
        await site.start()
        self.addresses = [a for a in self.runner.addresses]
        scheme = "https" if ssl_context is not None else "http"
        for a in self.addresses:
            log.info("console listening %s://%s:%d", scheme, a[0], a[1])
        return self

    @property
    def port(self):
        return self.addresses[0][1]

    async def close(self):
        await self.hub.close()
        if self.runner is not None:
            await self.runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, self.db.close)

    # ------------------------------------------------------------ plumbing

    def render(self, request, name, status=200, **ctx):
        ctx.setdefault("user", request.get("user"))
        ctx.setdefault("csrf", request.get("csrf"))
        ctx.setdefault("config", self.config)
        ctx.setdefault("now", self.clock())
        ctx.setdefault("views", views)
        body = self.jinja.get_template(name).render(**ctx)
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def fail(self, request, status, text, counter):
        self.counters[counter] += 1
        if request.get("user") is None or request.path.startswith("/events") or name_is_fragment(request.path):
            return web.Response(text=text + "\n", status=status, content_type="text/plain")
        return self.render(request, "error.html", status=status, message=text)

    @web.middleware
    async def _guard(self, request, handler):
        try:
            resp = await self._guarded(request, handler)
        except BadInput as e:
            resp = self.fail(request, e.status, str(e), e.counter)
        except web.HTTPException as e:
            e.headers.update(self._headers)
            raise
        except ReceiverError as e:  # a store refusal we did not expect: say it, count it
            resp = self.fail(request, 409, str(e), "refused")
        resp.headers.update(self._headers)
        resp.headers["Server"] = "panic-console"
        if "Cache-Control" not in resp.headers:  # pages hold victims' data: never cached; our own code may be
            resp.headers["Cache-Control"] = "max-age=600" if request.path.startswith("/static/") else "no-store"
        return resp

    async def _guarded(self, request, handler):
        path = request.path
        if path.startswith("/static/"):
            return await handler(request)
        if path == "/login":
            return await handler(request)
        sess = await self._session(request)
        if sess is None:
            self.counters["no session"] += 1
            if path == "/events" or name_is_fragment(path):
                return web.Response(text="sign in\n", status=401, content_type="text/plain")
            if request.method == "GET":
                nxt = request.path_qs if path != "/" else "/"
                raise web.HTTPSeeOther("/login?" + urllib.parse.urlencode({"next": nxt}))
            return self.render(request, "login.html", status=401, message="Your session has ended: sign in again.",
                               next="/", login_csrf="")
        request["user"] = {"name": sess["user_name"], "role": sess["role"]}
        request["csrf"] = sess["csrf"]
        request["session"] = sess["token_hash"]
        if request.method == "POST":
            if not security.origin_ok(request.headers.get("Origin"), request.host, self.config.security.tls):
                raise BadInput(403, "refused: this form came from another site", "csrf refused")
            form = await self._form(request)
            tok = request.headers.get(security.CSRF_HEADER) or form.get(security.CSRF_FIELD)
            if not security.same(tok, sess["csrf"]):
                self._audit_bg(request, "csrf refused", detail=path)
                raise BadInput(403, "refused: the form's security token is missing or wrong (reload the page)",
                               "csrf refused")
            request["form"] = form
        return await handler(request)

    async def _form(self, request):
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise BadInput(413, "the form is too large", "form too large")
        except (ValueError, UnicodeDecodeError):
            raise BadInput(400, "the form could not be read", "bad form")
        out = {}
        for k in form:
            v = form.get(k)
            if not isinstance(v, str):
                raise BadInput(400, "files are not accepted", "bad form")
            out[k] = v
        return out

    async def _session(self, request):
        tok = request.cookies.get(self.config.security.cookie)
        if not tok or len(tok) > 100:
            return None
        h = SC.token_hash(tok)
        now = self.clock()
        sec = self.config.security
        sess = await self.db(lambda s: s.session_get(h))
        if sess is None:
            return None
        if sess["disabled"] or now - sess["last_seen"] > sec.idle_s or now - sess["created"] > sec.max_s:
            await self.db(lambda s: s.session_delete(h))
            self.counters["session expired"] += 1
            return None
        if request.path != "/events" and now - sess["last_seen"] > 5:
            await self.db(lambda s: s.session_touch(h, now))
        return sess

    def _peer(self, request):
        return request.remote or "?"

    def _audit_bg(self, request, action, detail=None):
        user = (request.get("user") or {}).get("name") or "-"
        asyncio.ensure_future(self.db(lambda s: s.console_audit(user, action, detail=detail, peer=self._peer(request))))

    def need(self, request, role):
        if not users.may(request["user"]["role"], role):
            self._audit_bg(request, "forbidden", detail="%s needs %s" % (request.path, role))
            raise BadInput(403, "forbidden: this needs the %s role" % role, "forbidden")

    # ------------------------------------------------------------ login

    def _login_token(self, request):
        """The sign-in form's double-submit token: the browser's own if it
        has one (two tabs, or a page loaded twice, share it), else new."""
        tok = request.cookies.get(self.config.security.login_cookie, "")
        if len(tok) == 43 and all(c.isalnum() or c in "-_" for c in tok):
            return tok
        return security.new_token()

    async def login_page(self, request):
        tok = self._login_token(request)
        resp = self.render(request, "login.html", next=_safe_next(request.query.get("next")), login_csrf=tok,
                           message=request.query.get("m") and "You were signed out." or None)
        resp.set_cookie(self.config.security.login_cookie, tok, **self.config.security.cookie_attrs(max_age=3600))
        return resp

    async def login(self, request):
        now = self.clock()
        peer = self._peer(request)
        form = await self._form(request)
        sec = self.config.security
        if not security.origin_ok(request.headers.get("Origin"), request.host, sec.tls) or not security.same(
                form.get("login_csrf"), request.cookies.get(sec.login_cookie)):
            raise BadInput(403, "refused: the sign-in form's security token is missing or wrong (reload the page)",
                           "csrf refused")
        nxt = _safe_next(form.get("next"))

        def again(msg, status):
            tok = self._login_token(request)
            resp = self.render(request, "login.html", status=status, message=msg, next=nxt, login_csrf=tok,
                               user=None)
            resp.set_cookie(sec.login_cookie, tok, **sec.cookie_attrs(max_age=3600))
            return resp

        if self.throttle.blocked(peer, now):
            self.counters["login throttled"] += 1
            return again("Too many failed sign-ins from this address: wait a few minutes.", 429)
        name = form.get("name", "")
        pw = form.get("password", "")
        if len(name) > users.NAME_MAX or len(pw) > users.MAX_PASSWORD:
            self.throttle.failed(peer, now)
            self.counters["login failed"] += 1
            return again("Wrong name or password.", 401)
        verdict, user = await self._login(name, pw, now, peer)
        if verdict != users.OK:
            self.throttle.failed(peer, now)
            self.counters["login " + verdict] += 1
            msg = {users.LOCKED: "This account is locked after repeated failures: wait 15 minutes or ask an admin."
                   }.get(verdict, "Wrong name or password.")
            return again(msg, 401)
        assert user is not None  # OK comes with the account: users.precheck refuses a name without one
        tok = security.new_token()
        csrf = security.new_token()
        h = SC.token_hash(tok)
        await self.db(lambda s: s.session_create(h, user["name"], csrf, now, peer))
        log.info("console: %s signed in from %s", user["name"], peer)
        resp = _redirect(nxt)
        resp.set_cookie(sec.cookie, tok, **sec.cookie_attrs())
        resp.del_cookie(sec.login_cookie, path="/")
        return resp

    async def _login(self, name, pw, now, peer):
        """users.login in three steps: the account (store thread), the
        argon2 check (another thread: 64 MiB and tens of milliseconds must
        not hold up the live feed), the verdict written (store thread)."""
        ok_name = users.name_problem(name) is None
        user, h = await self.db(lambda s: (s.user_get(name), s.user_hash(name)) if ok_name else (None, None))
        pre = users.precheck(user, now)
        ok = await asyncio.get_running_loop().run_in_executor(
            None, users.verify_password, h if pre is None else None, pw)
        if pre is not None:
            return pre, None
        if not ok:
            until = await self.db(lambda s: s.user_login_failed(name, now, users.LOCKOUT_FAILURES, users.LOCKOUT_S,
                                                                 peer=peer))
            return (users.LOCKED if until else users.BAD), None
        await self.db(lambda s: s.user_login_ok(name, now, peer=peer))
        return users.OK, user

    async def logout(self, request):
        h = request["session"]
        name = request["user"]["name"]
        await self.db(lambda s: (s.session_delete(h), s.console_audit(name, "logout", peer=self._peer(request))))
        resp = _redirect("/login?m=1")
        resp.del_cookie(self.config.security.cookie, path="/")
        return resp

    # ------------------------------------------------------------ queue and live

    async def queue(self, request):
        since = self.clock() - self.config.queue_days * 86400

        def read(s):
            last = s.cursor_text(s.feed_cursor())  # first: events after it are replayed (a row read twice is harmless)
            return last, s.console_queue(since)

        last, rows = await self.db(read)
        now = self.clock()
        items = [views.row_view(r, now) for r in views.order_queue(rows)]
        return self.render(request, "queue.html", items=items, since=last)

    async def queue_rows(self, request):
        """Several queue rows at once (?ids=1,2,3, at most ROWS_MAX): the
        page asks for every incident that changed since its last ask in one
        request, so a burst of alarms costs one round trip, not one each.
        An incident that left the queue comes back as an empty row marked
        data-gone."""
        raw = request.query.get("ids", "")
        parts = raw.split(",") if raw else []
        if not parts or len(parts) > ROWS_MAX:
            raise BadInput(400, "give 1 to %d incident numbers (?ids=1,2,3)" % ROWS_MAX)
        ids = sorted({_int(p) for p in parts})
        since = self.clock() - self.config.queue_days * 86400

        def read(s):
            return [(i, s.console_incident(i)) for i in ids]

        now = self.clock()
        out = []
        tpl = self.jinja.get_template("_row.html")
        for i, inc in await self.db(read):
            if inc is None or inc["outcome"] is not None or inc["opened_at"] < since:
                out.append('<div class="row" id="inc-%d" data-gone="1"></div>' % i)
            else:
                out.append(tpl.render(it=views.row_view(inc, now), csrf=request.get("csrf"), now=now))
        return web.Response(text="\n".join(out), content_type="text/html", charset="utf-8")

    async def events(self, request):
        q = request.headers.get("Last-Event-ID") or request.query.get("since")
        since = None
        if q is not None:
            try:
                since = self.hub.db.store.cursor_from_text(q)
            except ValueError:
                raise BadInput(400, "the event id must be one this console gave") from None
        hub = self.hub
        sub = hub.subscribe()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        resp.headers.update(self._headers)
        h = request["session"]
        try:
            await resp.prepare(request)
            await resp.write(b"retry: %d\n\n" % live.RETRY_MS)
            if since is not None and since < sub.since:
                data = await hub.replay(since, sub.since)
                if data is None:
                    await resp.write(b"event: reload\ndata: {}\n\n")
                    return resp
                if data:
                    await resp.write(data)
            loop = asyncio.get_running_loop()
            checked = loop.time()
            while True:
                try:
                    data = await asyncio.wait_for(sub.queue.get(), live.KEEPALIVE_S)
                except TimeoutError:
                    data = b": keepalive\n\n"
                if loop.time() - checked >= live.KEEPALIVE_S:  # the session still holds (disabled, idle, ended)
                    checked = loop.time()
                    sess = await self.db(lambda s: s.session_get(h))
                    now = self.clock()
                    sec = self.config.security
                    if (sess is None or sess["disabled"] or now - sess["last_seen"] > sec.idle_s
                            or now - sess["created"] > sec.max_s):
                        await resp.write(b"event: logout\ndata: {}\n\n")
                        return resp
                if data is None or sub.dropped:
                    return resp  # the browser reconnects and replays from its last id
                await resp.write(data)
        except (ConnectionError, asyncio.CancelledError):
            return resp
        finally:
            hub.unsubscribe(sub)

    # ------------------------------------------------------------ incidents

    async def _incident(self, request):
        iid = _int(request.match_info["id"])
        inc = await self.db(lambda s: s.console_incident(iid))
        if inc is None:
            raise BadInput(404, "no incident #%d" % iid, "unknown incident")
        return inc

    async def _incident_ctx(self, inc, frames_limit=500):
        def read(s):
            return (s.incident_frames(inc["id"], inc["device_id"], inc["opened_seq"], frames_limit),
                    s.incident_actions(inc["id"]), s.incident_escalations(inc["id"]), s.get_device(inc["device_id"]),
                    [u["name"] for u in s.users() if not u["disabled"]], s.cursor_text(s.feed_cursor()))

        frames, actions, escalations, device, names, last = await self.db(read)
        now = self.clock()
        it = views.row_view(inc, now)
        return {"it": it, "inc": inc, "frames": frames, "actions": actions,
                "escalations": escalations, "device": device, "names": names, "since": last,
                "timeline": views.timeline(inc, frames, actions),
                "trail": position.trail(frames), "pos": it["pos"], "evidence": it["evidence"]}

    async def incident(self, request, message=None, status=200):
        inc = await self._incident(request)
        ctx = await self._incident_ctx(inc)
        return self.render(request, "incident.html", status=status, message=message,
                           done=request.query.get("done"), outcomes=SC.OUTCOMES, **ctx)

    async def incident_status(self, request):
        inc = await self._incident(request)
        return self.render(request, "_status.html", it=views.row_view(inc, self.clock()), inc=inc)

    async def incident_timeline(self, request):
        inc = await self._incident(request)
        ctx = await self._incident_ctx(inc)
        return self.render(request, "_timeline.html", **ctx)

    async def incident_map(self, request):
        inc = await self._incident(request)
        ctx = await self._incident_ctx(inc)
        return web.json_response({"pos": ctx["pos"], "evidence": ctx["evidence"], "trail": ctx["trail"],
                                  "tiles": self.config.tile_url,
                                  "incident": inc["id"]})

    async def summary(self, request):
        inc = await self._incident(request)
        ctx = await self._incident_ctx(inc, frames_limit=2000)
        name = request["user"]["name"]
        await self.db(lambda s: s.console_audit(name, "summary", device_id=inc["device_id"], incident_id=inc["id"],
                                                peer=self._peer(request)))
        return self.render(request, "summary.html", **ctx)

    async def incident_action(self, request):
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise BadInput(404, "no such action", "unknown action")
        inc = await self._incident(request)
        user = request["user"]
        name, role = user["name"], user["role"]
        form = request["form"]
        peer = self._peer(request)
        iid = inc["id"]
        sup = users.may(role, "supervisor")
        if action in SUPERVISOR_ONLY:
            self.need(request, "supervisor")
        if action in OWNER_ACTIONS and inc["owner"] != name and not sup:
            raise BadInput(403, "claim incident #%d first%s" % (
                iid, "" if not inc["owner"] else ": it is %s's" % inc["owner"]), "not owner")
        try:
            if action == "claim":
                won, owner = await self.db(lambda s: s.claim_and_record(iid, name, peer))
                if not won:
                    self.counters["claim lost"] += 1
                    self.hub.kick()
                    return await self.incident(request, status=409, message="Incident #%d was claimed by %s first: "
                                                                           "it is theirs." % (iid, owner))
                log.info("console: %s claimed incident #%d", name, iid)
            elif action == "release":
                await self.db(lambda s: s.release(iid, name, peer, supervisor=sup))
            elif action == "reassign":
                to = _field(form, "to", users.NAME_MAX)
                u = await self.db(lambda s: s.user_get(to))
                if u is None or u["disabled"]:
                    raise BadInput(400, "no active user %r" % to)
                await self.db(lambda s: s.claim_and_record(iid, to, peer, force=True, by=name))
            elif action == "note":
                text = _field(form, "text", NOTE_MAX)
                await self.db(lambda s: s.add_note(iid, name, text, peer))
            elif action == "escalate":
                force = _field(form, "force", FIELD_MAX)
                ref = _field(form, "reference", FIELD_MAX)
                await self.db(lambda s: s.escalate(iid, name, force, ref, peer))
                log.info("console: %s escalated incident #%d to %s", name, iid, force)
            elif action == "close":
                outcome = form.get("outcome", "")
                if outcome not in SC.OUTCOMES:
                    raise BadInput(400, "choose an outcome (%s)" % ", ".join(SC.OUTCOMES))
                note = form.get("note", "").strip()[:NOTE_MAX] or None
                await self.db(lambda s: s.close_incident(iid, name, outcome, note, peer))
                if inc["state"] in S.OPEN_STATES:  # the device is still alerting: tell it to stop
                    await self._command(iid, inc["device_id"], name, S.CMD_STAND_DOWN, None, peer)
                log.info("console: %s closed incident #%d: %s", name, iid, outcome)
            elif action == "reopen":
                reason = _field(form, "reason", NOTE_MAX)
                await self.db(lambda s: s.reopen_incident(iid, name, reason, peer))
            elif action == "listen-in":
                await self._command(iid, inc["device_id"], name, S.CMD_LISTEN_IN, None, peer)
            elif action == "track":
                secs = _int(form.get("seconds", ""), "the tracking interval")
                if not 0 <= secs <= 0xFFFF:
                    raise BadInput(400, "the tracking interval is 0..65535 seconds")
                await self._command(iid, inc["device_id"], name, S.CMD_TRACK, secs, peer)
            elif action == "stand-down":
                await self._command(iid, inc["device_id"], name, S.CMD_STAND_DOWN, None, peer)
        except SC.Conflict as e:
            self.counters["conflict"] += 1
            return await self.incident(request, status=409, message=str(e))
        self.hub.kick()
        raise web.HTTPSeeOther("/incident/%d?done=%s" % (iid, action))

    async def _command(self, iid, device_id, name, kind, value, peer):
        """A device command through the core's own operator_command (queued
        for the device's next ACK; a stand-down closes its open incidents),
        then its line on the incident's timeline."""
        clock = self.clock

        def run(s):
            core.operator_command(s, device_id, kind, value, actor=name, clock=clock)
            s.record_command(iid, name, kind, value, peer)

        await self.db(run)
        log.info("console: %s queued %s for device %d (incident #%d)", name, kind, device_id, iid)

    # ------------------------------------------------------------ devices, people, statistics, audit

    async def devices(self, request):
        since = self.clock() - 365 * 86400

        def read(s):
            return s.list_devices(), s.false_alarm_counts(since), s.device_firmware()

        devs, false, fw = await self.db(read)
        return self.render(request, "devices.html", devices=devs, false=false, firmware=fw)

    async def person(self, request):
        ref = request.query.get("ref", "")
        if not ref or len(ref) > 64:
            raise BadInput(400, "give a person reference (?ref=...)")
        since = self.clock() - 365 * 86400

        def read(s):
            return ([d for d in s.list_devices() if d["person_ref"] == ref], s.incidents_of_person(ref),
                    s.false_alarm_counts(since).get(ref, 0))

        devs, incs, nfalse = await self.db(read)
        if not devs:
            raise BadInput(404, "no device is registered for that person reference", "unknown person")
        return self.render(request, "person.html", ref=ref, devices=devs, incidents=incs, nfalse=nfalse,
                           level=views.false_alarm_level(nfalse))

    async def _stats(self):
        since = self.clock() - 400 * 86400
        rows = await self.db(lambda s: s.stats_rows(since))
        return views.statistics_by_month(rows)

    async def stats(self, request):
        return self.render(request, "stats.html", months=await self._stats(), outcomes=SC.OUTCOMES)

    async def stats_csv(self, request):
        text = views.statistics_csv(await self._stats())
        return web.Response(text=text, content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": 'attachment; filename="panic-console-statistics.csv"'})

    async def audit(self, request):
        self.need(request, "supervisor")
        before = request.query.get("before")
        b = None if before is None else _int(before, "before")
        rows = await self.db(lambda s: s.audit_page(b, 200))
        return self.render(request, "audit.html", rows=rows)

    async def counters_json(self, request):
        """Rejections and live-feed figures of this console process."""
        self.need(request, "supervisor")
        c = dict(self.counters)
        c.update(("live " + k, v) for k, v in self.hub.counters.items())
        c["live subscribers"] = len(self.hub.subs)
        return web.json_response(dict(sorted(c.items())))

    # ------------------------------------------------------------ accounts (admin)

    async def admin_users(self, request, message=None, status=200):
        self.need(request, "admin")
        rows = await self.db(lambda s: s.users())
        return self.render(request, "users.html", status=status, rows=rows, roles=SC.ROLES, message=message)

    async def admin_user_add(self, request):
        self.need(request, "admin")
        form = request["form"]
        name, role, pw = form.get("name", ""), form.get("role", ""), form.get("password", "")
        who = request["user"]["name"]
        why = users.new_account_problem(name, role, pw)
        if why is not None:
            self.counters["bad request"] += 1
            return await self.admin_users(request, message=why, status=400)
        h = await asyncio.get_running_loop().run_in_executor(None, users.hash_password, pw)
        try:
            await self.db(lambda s: s.user_add(name, role, h, actor=who, peer=self._peer(request)))
        except SC.DuplicateUser as e:
            self.counters["bad request"] += 1
            return await self.admin_users(request, message=str(e), status=400)
        raise web.HTTPSeeOther("/admin/users")

    async def admin_user_action(self, request):
        self.need(request, "admin")
        name = request.match_info["name"]
        action = request.match_info["action"]
        who = request["user"]["name"]
        peer = self._peer(request)
        try:
            if action in ("disable", "enable"):
                if name == who and action == "disable":
                    raise BadInput(400, "an admin cannot disable their own account here")
                await self.db(lambda s: s.user_set_disabled(name, action == "disable", actor=who, peer=peer))
            elif action == "passwd":
                pw = request["form"].get("password", "")
                why = users.password_problem(pw, name)
                if why is not None:
                    raise users.UserError(why)
                h = await asyncio.get_running_loop().run_in_executor(None, users.hash_password, pw)
                await self.db(lambda s: s.user_set_password(name, h, actor=who, peer=peer))
            else:
                raise BadInput(404, "no such action", "unknown action")
        except (users.UserError, SC.UnknownUser) as e:
            self.counters["bad request"] += 1
            return await self.admin_users(request, message=str(e), status=400)
        raise web.HTTPSeeOther("/admin/users")


# ---------------------------------------------------------------- helpers


def name_is_fragment(path):
    return path.startswith("/queue/rows") or path.endswith(("/status", "/timeline", "/map.json"))


def _int(text, what="the incident number"):
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 12:
        raise BadInput(400, "%s must be a whole number" % what)
    return int(text)


def _field(form, key, maxlen):
    v = form.get(key, "").strip()
    if not v:
        raise BadInput(400, "%s is needed" % key.replace("_", " "))
    if len(v) > maxlen:
        raise BadInput(400, "%s is longer than %d characters" % (key.replace("_", " "), maxlen))
    if any(ord(c) < 32 and c not in "\r\n\t" for c in v):
        raise BadInput(400, "%s holds control characters" % key.replace("_", " "))
    return v


def _redirect(location):
    return web.Response(status=303, headers={"Location": location})


def _safe_next(nxt):
    """Only a path on this console (never //host or a scheme)."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt or len(nxt) > 200:
        return "/"
    return nxt


def ssl_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def start(db_path, host, port, config, cert=None, key=None, receiver=None):
    """Start a console on the running loop. receiver: the serve's
    live.ConsoleReceiver, to be kicked at each commit (None: a separate
    process, which polls the store). Returns the Console (close() it)."""
    sslctx = ssl_context(cert, key) if cert else None
    st = S.open_store(db_path, None, create=False)
    c = Console(st, config)
    try:
        await c.start(host, port, sslctx)
    except BaseException:
        await c.close()
        raise
    if receiver is not None:
        receiver.on_commit = c.hub.kick
    return c
