"""The hook between the receiver's events and the forward queue.

Owns: turning the events of one store transaction into queue rows of the
same transaction, so an event and the messages it causes are committed
together or not at all (nothing can be raised and not forwarded, or
forwarded and not raised). Never sends anything: the forwarder
(forwarder.py, inside `serve`) reads the committed queue.

core.Receiver calls `queue(store, events)` inside its open transaction
(the batch, and the supervision tick). Targets are read from the store
when the receiver starts; `panic receiver forward add/remove` take effect
at the next start. An outbox exists only when targets are configured, so
a receiver without forwarding does no work here.
"""

import json
import logging
from typing import Callable

from receiver.forward import config as C
from receiver.forward import events as E

log = logging.getLogger("receiver.forward")

_KINDS = frozenset(E.CODES) | frozenset(E.MAP_KINDS)
SCHEMA = 3  # the store schema version that added forward_targets and forward_queue


class Outbox:
    def __init__(self, targets):
        self.targets = targets  # checked configs (config.check), each with "name"
        self.on_queued: Callable[[], None] | None = None  # called (on the caller's thread) when rows were queued
        self.queued = 0
        self.errors = 0  # events a message could not be made for (logged; a bug)
        self._seq_targets = tuple(t["name"] for t in targets if t["kind"] == C.DC09)

    @classmethod
    def for_store(cls, store):
        """An Outbox for the store's targets, or None when there are none.
        A target whose settings no longer check is an error, not skipped:
        alarms must not silently stop going to an ARC."""
        if store.schema_version() < SCHEMA:  # opened by a test with fewer migrations: nothing configured
            return None
        rows = store.forward_targets()
        if not rows:
            return None
        return cls([C.from_row(r) for r in rows])

    def queue(self, store, events):
        """Queue the messages for `events` (core.Event objects) inside the
        store transaction the caller holds."""
        rows = []
        for ev in events:
            if ev.kind not in _KINDS:
                continue
            d = ev.as_dict()
            for t in self.targets:
                try:
                    body = E.dc09_body(d, t) if t["kind"] == C.DC09 else E.osmand_params(d, t)
                except Exception:
                    # a bug here must never stop the receiver taking alarms
                    # (the batch would fail and nothing would be ACKed): the
                    # event is stored and raised; this one message is not made
                    log.exception("forward %s: no message for a %s event (a bug): the event is stored, not forwarded",
                                  t["name"], d.get("kind"))
                    self.errors += 1
                    continue
                if body is not None:
                    rows.append((t["name"], d["time"], d["kind"], d.get("device_id"), d.get("incident_id"),
                                 json.dumps(body, separators=(",", ":"))))
        if rows:
            store.forward_enqueue(rows, self._seq_targets)
            self.queued += len(rows)
            if self.on_queued is not None:
                self.on_queued()
        return len(rows)
