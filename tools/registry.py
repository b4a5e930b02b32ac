"""The receiver's device registry, as `panic provision` and `panic field` see it.

Owns: a small seam between the host tools and the receiver's store, so the
tools can be built and tested without it:

    Registry protocol (duck-typed):
        has_device(device_id) -> bool
        add_device(device_id, key_bytes, person_ref) -> None   (RegistryError on duplicate)
        test_alerts(device_id, since_unix) -> list of dict      (alerts labelled as test)

`ReceiverRegistry` implements it over the receiver package:
`receiver.store.open_store(path, receiver.masterkey.load(key_file))`,
`add_device`, `get_device` and `test_frames` (frames filed under a test
incident). Every receiver error becomes a one-line RegistryError.
`MemoryRegistry` is the in-memory implementation the tests use.

`check_person_ref` is the receiver's one rule for person references
(receiver/personref.py), for tools that check their arguments before they
touch anything.

Never does: print, log or put in an error message the device key.
Stays in sync with: receiver/store.py (API names) and docs/tools.md.
"""

from tools.errors import EXIT_REFUSED, EXIT_UNAVAILABLE, PanicError


class RegistryError(PanicError):
    """The registry refused, or its API is not what this adapter expects.
    unavailable: True when the store or the master key could not be opened
    (exit 3 under the convention of tools/errors.py), else False (exit 1)."""

    def __init__(self, msg, unavailable=False):
        PanicError.__init__(self, msg)
        self.unavailable = unavailable
        self.exit_code = EXIT_UNAVAILABLE if unavailable else EXIT_REFUSED


def check_person_ref(ref):
    """Why `ref` breaks the receiver's person-reference rule, or None."""
    from receiver import personref

    return personref.problem(ref)


class MemoryRegistry:
    """A registry in memory (tests, dry runs)."""

    def __init__(self):
        self.devices = {}
        self.alerts = []  # (device_id, unix time, dict)

    def __repr__(self):
        return "<MemoryRegistry %d devices>" % len(self.devices)

    def has_device(self, device_id):
        return device_id in self.devices

    def add_device(self, device_id, key_bytes, person_ref):
        if device_id in self.devices:
            raise RegistryError("device %d is already registered" % device_id)
        self.devices[device_id] = (bytes(key_bytes), person_ref)

    def key_of(self, device_id):
        return self.devices[device_id][0]

    def record_alert(self, device_id, when, alert):
        self.alerts.append((device_id, when, dict(alert)))

    def test_alerts(self, device_id, since_unix):
        return [a for d, t, a in self.alerts if d == device_id and t >= since_unix and a.get("test")]


class ReceiverRegistry:
    """The receiver's store (receiver.store.open_store) as a Registry.

    need_key=True (provisioning): the receiver master key is loaded with
    receiver.masterkey.load(master_key_file) (file, else $PANIC_RECEIVER_KEY)
    at once, so a missing or wrong key is reported before anything else is
    touched; the store is created if it does not exist.
    need_key=False (the field self-test only reads): the store must exist;
    a master key is used only if a file is given."""

    def __init__(self, db_path, master_key_file=None, need_key=True):
        try:
            from receiver import masterkey
            from receiver import store as S
            from receiver.errors import ReceiverError
        except ImportError as e:
            raise RegistryError("receiver store not available (import receiver.store failed: %s)" % e)
        self._err = ReceiverError
        self._unknown = S.UnknownDevice if hasattr(S, "UnknownDevice") else ReceiverError
        try:
            mk = masterkey.load(master_key_file) if (need_key or master_key_file) else None
            self.s = S.open_store(db_path, mk, create=need_key)
        except ReceiverError as e:
            raise RegistryError(_safe(e), unavailable=True)
        except Exception as e:  # sqlite or OS trouble opening the file
            raise RegistryError("cannot open the receiver store %s: %s" % (db_path, _safe(e)), unavailable=True)

    def __repr__(self):
        return "<ReceiverRegistry>"

    def close(self):
        self.s.close()

    def has_device(self, device_id):
        try:
            return self.s.get_device(device_id) is not None
        except Exception as e:
            raise RegistryError("receiver store lookup failed: %s" % _safe(e))

    def add_device(self, device_id, key_bytes, person_ref):
        try:
            self.s.add_device(device_id, key_bytes, person_ref, via="panic provision")
        except Exception as e:
            raise RegistryError("the receiver store refused device %d: %s" % (device_id, _safe(e)))

    def test_alerts(self, device_id, since_unix):
        """TEST alerts the receiver stored for the device since a time:
        frames filed under a test incident (receiver.store.test_frames),
        each a dict with "test": True and "label": "test"."""
        try:
            rows = self.s.test_frames(device_id, since_unix)
        except Exception as e:
            raise RegistryError("receiver store query failed: %s" % _safe(e))
        return [dict(r, test=True, label="test") for r in rows if r.get("type") in ("TEST", "ALERT")]


def _safe(e):
    """An exception's message, one line, never containing hex key material."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
    import re

    return re.sub(r"[0-9a-fA-F]{32,}", "<redacted>", msg)
