"""Real PostgreSQL servers for the tests and benches: a primary, and a
streaming standby made from it, each in a temporary directory on a port
of its own on 127.0.0.1.

Binaries: Debian's postgresql package (installed by `make setup` and
.ci/run when missing) puts them under /usr/lib/postgresql/VERSION/bin;
the newest version there is used ($PANIC_PG_BIN overrides). initdb and
postgres refuse to run as root, so when the tests run as root every
server command runs as the `postgres` account (runuser) and the data
directory is given to it. The cluster Debian's install creates on 5432
is never touched.

    srv = PgServer.start_new()           # initdb, start, wait until it answers
    srv.url("postgres")                  # postgresql://postgres@127.0.0.1:PORT/postgres
    sb = srv.standby()                   # pg_basebackup -R -X stream, started
    srv.make_synchronous()               # commits wait for the standby from now on
    srv.kill()                           # SIGKILL the postmaster (a crash)
    sb.promote()                         # pg_ctl promote, waits for read-write
    srv.stop(); srv.remove()

A standby copies the primary's configuration, synchronous_standby_names
included: a standby promoted with it set would wait on every commit for a
standby that does not exist, so it is cleared in the standby's own
configuration (issue 19). wal_retrieve_retry_interval is short so a
standby reconnects at once.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def bindir():
    env = os.environ.get("PANIC_PG_BIN")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: run make setup "
                           "(it installs Debian's postgresql package when root)")
    return os.path.dirname(found[-1])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_root():
    return os.geteuid() == 0


def _run(cmd, check=True, **kw):
    """A server command, as the postgres account when we are root."""
    if _as_root():
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def _give(path):
    if _as_root():
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


class PgServer:
    """One postgres process over one data directory."""

    def __init__(self, base, port, name="primary", fsync=False):
        self.base = base
        self.port = port
        self.name = name
        self.data = os.path.join(base, name)
        self.log = os.path.join(base, name + ".log")
        self.fsync = fsync
        self.bin = bindir()
        self.proc = None

    # ------------------------------------------------------------ making

    @classmethod
    def start_new(cls, fsync=False, settings=()):
        """A new primary. fsync=False for the tests (a killed postgres
        process still leaves its writes in the page cache; only a machine
        crash needs the fsync); the bench runs with fsync on.
        make_synchronous() turns synchronous replication on once a standby
        runs (before, every commit would wait for one)."""
        base = tempfile.mkdtemp(prefix="panic-pg-")
        os.chmod(base, 0o755)
        _give(base)
        srv = cls(base, _free_port(), fsync=fsync)
        srv.initdb()
        conf = [
            "listen_addresses = '127.0.0.1'",
            "port = %d" % srv.port,
            "unix_socket_directories = ''",
            "fsync = %s" % ("on" if fsync else "off"),
            "full_page_writes = %s" % ("on" if fsync else "off"),
            "synchronous_commit = on",
            "max_connections = 200",
            "shared_buffers = 64MB",
            "wal_level = replica",
            "max_wal_senders = 4",
            "wal_keep_size = 256MB",
            "hot_standby = on",
            "wal_retrieve_retry_interval = 100ms",
            "log_min_messages = warning",
            "log_min_error_statement = panic",
            "tcp_keepalives_idle = 2",
            "tcp_keepalives_interval = 1",
            "tcp_keepalives_count = 3",
        ]
        conf.extend(settings)
        srv.append_conf(conf)
        with open(os.path.join(srv.data, "pg_hba.conf"), "a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        srv.start()
        return srv

    def initdb(self):
        _run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
              "--locale=C", "--no-instructions", "--no-sync"])

    def append_conf(self, lines):
        path = os.path.join(self.data, "postgresql.conf")
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n")

    def standby(self, name="standby"):
        """A streaming standby of this server (pg_basebackup -R -X stream),
        started and replicating."""
        sb = PgServer(self.base, _free_port(), name, self.fsync)
        _run([os.path.join(self.bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
              "-D", sb.data, "-R", "-X", "stream", "--no-sync", "-c", "fast"])
        sb.append_conf(["port = %d" % sb.port, "synchronous_standby_names = ''"])
        sb.start()
        return sb

    def make_synchronous(self, timeout=20.0):
        """synchronous_standby_names = '*' (the production setting: COMMIT
        returns once a standby has the WAL on disk), and wait until the
        standby replicates synchronously."""
        self.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.sql("SELECT pg_reload_conf()")
        end = time.monotonic() + timeout
        while self.sql("SELECT sync_state FROM pg_stat_replication") != [("sync",)]:
            if time.monotonic() > end:
                raise RuntimeError("the standby never became synchronous: %s" % self.tail())
            time.sleep(0.05)

    # ------------------------------------------------------------ running

    def start(self, wait=True):
        cmd = [os.path.join(self.bin, "postgres"), "-D", self.data]
        log = open(self.log, "ab")
        _give(self.log)
        if _as_root():
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        # a session of its own: a test runner killed with ^C must not take
        # the server down mid-test, and the server never outlives the
        # test session (stop() or the atexit in the fixture)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        log.close()
        if wait:
            self.wait_ready()

    def pid(self):
        """The postmaster's pid (runuser's child when root)."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def wait_ready(self, timeout=30.0, writable=False):
        import psycopg

        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("postgres %s exited: %s" % (self.name, self.tail()))
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2, autocommit=True) as c:
                    if not writable or not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        return
            except psycopg.OperationalError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("postgres %s not ready in %.0f s: %s\n%s" % (self.name, timeout, last, self.tail()))

    def tail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def url(self, dbname="postgres"):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, dbname)

    def sql(self, statement, dbname="postgres"):
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as c:
            cur = c.execute(statement)
            return cur.fetchall() if cur.description else None

    def promote(self):
        _run([os.path.join(self.bin, "pg_ctl"), "promote", "-D", self.data, "-w", "-t", "30"])
        self.wait_ready(writable=True)

    def kill(self):
        """SIGKILL the postmaster: what a crashed database machine looks
        like to its clients (its backends die with it once they notice)."""
        try:
            pid = self.pid()
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # its backends see the postmaster gone and exit; make it certain
        _run(["pkill", "-KILL", "-P", str(pid)], check=False)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        _run([os.path.join(self.bin, "pg_ctl"), "stop", "-D", self.data, "-m", "immediate", "-w", "-t", "20"],
             check=False)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def remove(self):
        shutil.rmtree(self.base, ignore_errors=True)


class Databases:
    """A database per test on one shared server: CREATE DATABASE ...
    TEMPLATE a database that already holds the store's schema (a copy of
    a few MB instead of a migration per test)."""

    def __init__(self, server):
        self.server = server
        self.n = 0
        self.template = "panic_template"
        from receiver import store_pg

        server.sql("CREATE DATABASE %s" % self.template)
        store_pg.PgStore(server.url(self.template)).close()

    def new(self, empty=False):
        """The URL of a new database: with the store's schema, or empty."""
        self.n += 1
        name = "t%d_%d" % (os.getpid(), self.n)
        self.server.sql("CREATE DATABASE %s%s" % (name, "" if empty else " TEMPLATE " + self.template))
        return self.server.url(name)

    def drop(self, urls):
        """Drop the databases (their connections are ended: a test may
        leave stores open)."""
        for url in urls:
            self.server.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % url.rpartition("/")[2])
