"""Every implementation keeps its contract (receiver/contracts.py,
host_sim/contracts.py): each member the contract names is there, and a
method takes the contract's parameters, in order, under the same names
(extra trailing parameters with defaults are allowed)."""

import inspect

import pytest

from host_sim import contracts as HC
from receiver import contracts as RC


def _impls():
    from firmware.modem.transport import ModemTransport
    from host_sim.tcp import ModelTcp, SocketTcp
    from host_sim.tcp import _ModelConn as ModelConn
    from host_sim.tcp import _SocketConn as SocketConn
    from receiver.endpoint import Endpoint
    from receiver.store import SqliteStore
    from receiver.store_pg import PgStore
    from fake_transport import FakeTransport

    return [
        (RC.CoreStore, SqliteStore), (RC.CoreStore, PgStore),
        (RC.StoreSection, SqliteStore), (RC.StoreSection, PgStore),
        (RC.FeedStore, SqliteStore), (RC.FeedStore, PgStore),
        (RC.Endpoint, Endpoint),
        (HC.Transport, ModemTransport), (HC.Transport, FakeTransport), (HC.OptionalTransport, ModemTransport),
        (HC.TcpBackend, ModelTcp), (HC.TcpBackend, SocketTcp),
        (HC.TcpConnection, ModelConn), (HC.TcpConnection, SocketConn),
    ]


def _params(fn):
    return [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def _attr_in_init(cls, name):
    """An attribute the class sets on self in a method (e.g. __init__)."""
    for klass in cls.__mro__:
        for v in vars(klass).values():
            if callable(v) and getattr(v, "__code__", None) is not None and name in v.__code__.co_names:
                return True
    return False


@pytest.mark.parametrize("proto,impl", _impls(), ids=lambda x: x.__name__)
def test_the_implementation_keeps_the_contract(proto, impl):
    missing, wrong = [], []
    for name in RC.members(proto):
        want = getattr(proto, name, None)
        have = getattr(impl, name, None)
        if have is None:
            if want is None and _attr_in_init(impl, name):
                continue  # an attribute the contract annotates, set on each instance
            missing.append(name)
            continue
        if isinstance(want, property) or not callable(want):
            continue
        if not callable(have):
            wrong.append("%s is not a method" % name)
            continue
        w = _params(want)
        h = _params(have)
        kinds_var = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        for i, p in enumerate(w):
            if p.kind in kinds_var:
                if not any(q.kind == p.kind for q in h):
                    wrong.append("%s takes no %s%s" % (name, "**" if p.kind == inspect.Parameter.VAR_KEYWORD else "*", p.name))
                continue
            if i >= len(h) or h[i].name != p.name:
                wrong.append("%s: parameter %d should be %r, is %r" % (name, i + 1, p.name, h[i].name if i < len(h) else None))
        for q in h[len(w):]:
            if q.kind not in kinds_var and q.default is inspect.Parameter.empty:
                wrong.append("%s: extra required parameter %r" % (name, q.name))
    assert (missing, wrong) == ([], [])


def test_a_class_that_breaks_a_contract_is_named():
    class Half:
        def transaction(self):
            pass

        def begin(self, extra):
            pass

    missing = [n for n in RC.members(RC.CoreStore) if getattr(Half, n, None) is None]
    assert "load_batch" in missing and "transaction" not in missing
    assert [p.name for p in _params(Half.begin)] != [p.name for p in _params(RC.CoreStore.begin)]
