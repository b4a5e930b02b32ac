"""The store parameter: the receiver's tests (test_receiver_*, test_forward_*,
test_location_receiver, test_console_store, test_pg_*) run once on SQLite and once on PostgreSQL.

One PostgreSQL server (tests/pg.py) is started for the whole session, the
first time a test asks for it, and every test gets databases of its own
made from a template that already holds the schema (CREATE DATABASE ...
TEMPLATE, a few hundredths of a second). A test reaches its store through
recv_helpers.store_path(tmp_path, name): a SQLite file in tmp_path, or the
URL of the test's database of that name. A test (or a module, with
pytestmark) marked `sqlite_only` runs on SQLite alone: what it checks is
SQLite's own (file modes, SQLite schema migrations, its row cache).
"""

import atexit

import pytest

import recv_helpers

STORE_MODULES = ("test_receiver_", "test_forward_", "test_location_receiver", "test_console_store")


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: what the test checks exists on the SQLite store alone")


def pytest_generate_tests(metafunc):
    if "rx_store" not in metafunc.fixturenames:
        return
    name = metafunc.module.__name__.rpartition(".")[2]
    if not name.startswith(STORE_MODULES):
        return
    kinds = ["sqlite"] if metafunc.definition.get_closest_marker("sqlite_only") else ["sqlite", "pg"]
    metafunc.parametrize("rx_store", kinds, indirect=True)


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the session (tests/pg.py)."""
    import pg

    srv = pg.PgServer.start_new()
    atexit.register(srv.remove)
    atexit.register(srv.stop)
    yield srv
    srv.stop()
    srv.remove()


@pytest.fixture(scope="session")
def pg_databases(pg_server):
    import pg

    return pg.Databases(pg_server)


@pytest.fixture(autouse=True)
def rx_store(request):
    """'sqlite' or 'pg': the store the receiver's tests run on."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield kind
        return
    names = recv_helpers.STORES = recv_helpers.PgNames(request.getfixturevalue("pg_databases"))
    try:
        yield kind
    finally:
        recv_helpers.STORES = None
        names.drop()
