"""Helpers for the operator console's tests: a real `panic receiver serve
--console` (or a separate `panic receiver console`) as a subprocess, users
made with the real `panic receiver user add`, protocol-level devices that
send over TCP until ACKed, and one headless Chromium (Debian's package,
driven by Playwright; never a downloaded browser) with screenshots of
every open page under build/console-screens/ when a step fails."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from protocol import frame as F
from receiver import masterkey
from receiver import store as S

from recv_helpers import Dev, send_until_acked

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREENS = os.path.join(ROOT, "build", "console-screens")
PASSWORD = "correct horse battery staple"
GNSS = dict(source=F.SRC_GNSS, lat=515007292, lon=-1246254, accuracy=8, age=2, battery=77, csq=19)
DEAD_TILES = "http://127.0.0.1:9/{z}/{x}/{y}.png"  # refused at once: the map falls back to its grid
CHROMIUM = os.environ.get("PANIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--autoplay-policy=user-gesture-required"]  # sound blocked until a click, as in a desktop browser


class Rx:
    """A receiver store with `serve --console` (console=True) or `serve`
    alone, and optionally a separate `panic receiver console`."""

    def __init__(self, tmp, *extra):
        self.tmp = str(tmp)
        self.db = os.path.join(self.tmp, "rx.db")
        self.mk = os.path.join(self.tmp, "master.key")
        if not os.path.exists(self.mk):
            fd = os.open(self.mk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(masterkey.generate_hex())
        self.extra = list(extra)
        self.procs = {}
        self.port = None
        self.console_port = None
        self.n = 0

    def master(self):
        with open(self.mk) as f:
            return masterkey.MasterKey(bytes.fromhex(f.read().strip()))

    def store(self, key=False):
        return S.open_store(self.db, self.master() if key else None)

    def panic(self, *args, stdin=None):
        r = subprocess.run([sys.executable, "-m", "tools.cli", "receiver", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, input=stdin)
        return r

    def add_user(self, name, role, password=PASSWORD):
        r = self.panic("user", "add", "--db", self.db, "--name", name, "--role", role, "--password-stdin",
                       stdin=password + "\n")
        assert r.returncode == 0, r.stderr

    def add_device(self, device_id, person_ref=None):
        d = Dev(device_id)
        st = self.store(key=True)
        try:
            st.add_device(device_id, d.key, person_ref or "URN-%d/26" % device_id)
        finally:
            st.close()
        return d

    def _spawn(self, name, args, want):
        self.n += 1
        log = os.path.join(self.tmp, "%s-%d.log" % (name, self.n))
        logf = open(log, "w")
        p = subprocess.Popen([sys.executable, "-m", "tools.cli", "receiver", *args], cwd=ROOT, stdout=logf,
                             stderr=subprocess.STDOUT)
        self.procs[name] = (p, logf, log)
        found = {}
        end = time.monotonic() + 30
        while time.monotonic() < end:
            with open(log) as f:
                text = f.read()
            m = re.search(r"listening tcp [^:\s]+:(\d+)", text)
            if m:
                found["tcp"] = int(m.group(1))
            m = re.search(r"console listening https?://[^:\s]+:(\d+)", text)
            if m:
                found["console"] = int(m.group(1))
            if all(k in found for k in want):
                return found
            assert p.poll() is None, text
            time.sleep(0.02)
        raise AssertionError("%s did not start: %s" % (name, open(log).read()))

    def serve(self, console=True, *more):
        args = ["serve", "--db", self.db, "--listen", "127.0.0.1:%d" % (self.port or 0), "--master-key-file",
                self.mk, "--supervise-every", "0", *self.extra, *more]
        if console:
            args += ["--console", "127.0.0.1:%d" % (self.console_port or 0)]
        found = self._spawn("serve", args, ("tcp", "console") if console else ("tcp",))
        self.port = found["tcp"]
        if console:
            self.console_port = found["console"]
        return self

    def console(self, *more, port=None):
        """A separate `panic receiver console` on the same store."""
        found = self._spawn("console", ["console", "--db", self.db, "--listen", "127.0.0.1:%d" % (port or 0),
                                        *self.extra, *more], ("console",))
        self.console_port = found["console"]
        return self

    def stop(self, name=None, sig=signal.SIGTERM):
        for n in ([name] if name else list(self.procs)):
            p, logf, _log = self.procs.pop(n, (None, None, None))
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(sig)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            logf.close()

    def log(self, name):
        return open(self.procs[name][2]).read() if name in self.procs else ""

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.console_port

    def send(self, d, raw, timeout=30):
        """One frame over TCP until it is ACKed (a device retries so)."""
        return send_until_acked(self.port, d, raw, timeout)


def first_event(rx, incident_id, kind):
    """The first stored event of `kind` for the incident (its dict, with
    event_id and time: the receiver's clock when the batch was written),
    or None."""
    st = rx.store()
    try:
        for e in st.events_after(0, 100000):
            if e.get("incident_id") == incident_id and e["kind"] == kind:
                return e
    finally:
        st.close()
    return None


def chromium_available():
    return shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM)


def launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                              ignore_default_args=["--autoplay-policy=no-user-gesture-required"])


def login(page, url, name, password=PASSWORD, then="/"):
    page.goto(url + "/login?next=" + then)
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state()


@contextlib.contextmanager
def step(name, *pages):
    """A test step; if it fails, every given page is saved as a PNG under
    build/console-screens/ (named after the step) before the error goes
    on."""
    try:
        yield
    except BaseException:
        os.makedirs(SCREENS, exist_ok=True)
        for i, p in enumerate(pages):
            try:
                p.screenshot(path=os.path.join(SCREENS, "%s-%d.png" % (re.sub(r"[^\w.-]", "_", name), i)),
                             full_page=True)
            except Exception:  # noqa: BLE001 - the page may be gone; the step's own error matters
                pass
        raise
