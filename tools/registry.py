"""The receiver's device registry, as `panic provision` and `panic field` see it.

Owns: a small seam between the host tools and the receiver's store, so the
tools can be built and tested without it:

    Registry protocol (duck-typed):
        has_device(device_id) -> bool
        add_device(device_id, key_bytes, person_ref) -> None   (RegistryError on duplicate)
        test_alerts(device_id, since_unix) -> list of dict      (alerts labelled as test)

`ReceiverRegistry` implements it over the receiver package's API by name
(`receiver.store.open_store(db_path, master_key)` with add_device /
get_device); if those names are missing or differ, it raises RegistryError
naming exactly what it looked for, so the one place to adjust is here.
`MemoryRegistry` is the in-memory implementation the tests use.

Never does: print, log or put in an error message the device key.
Stays in sync with: receiver/store.py (API names) and docs/tools.md.
"""


class RegistryError(Exception):
    """The registry refused, or its API is not what this adapter expects."""


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
    """The receiver's store, reached through receiver.store by name."""

    def __init__(self, db_path, master_key=None):
        try:
            from receiver import store as S
        except ImportError as e:
            raise RegistryError("receiver store not available (import receiver.store failed: %s)" % e)
        opener = getattr(S, "open_store", None)
        if opener is None:
            raise RegistryError("receiver.store has no open_store(db_path, master_key): update tools/registry.py")
        try:
            self.s = opener(db_path, master_key)
        except TypeError:
            raise RegistryError("receiver.store.open_store does not take (db_path, master_key): update tools/registry.py")
        except Exception as e:
            raise RegistryError("cannot open the receiver store %s: %s" % (db_path, _safe(e)))
        for name in ("add_device", "get_device"):
            if not callable(getattr(self.s, name, None)):
                raise RegistryError("the receiver store has no %s(): update tools/registry.py" % name)

    def __repr__(self):
        return "<ReceiverRegistry>"

    def has_device(self, device_id):
        try:
            return self.s.get_device(device_id) is not None
        except KeyError:
            return False
        except Exception as e:
            if e.__class__.__name__ in ("NotFound", "UnknownDevice", "DeviceNotFound"):
                return False
            raise RegistryError("receiver store lookup failed: %s" % _safe(e))

    def add_device(self, device_id, key_bytes, person_ref):
        try:
            self.s.add_device(device_id, key_bytes, person_ref)
        except Exception as e:
            raise RegistryError("the receiver store refused device %d: %s" % (device_id, _safe(e)))

    def test_alerts(self, device_id, since_unix):
        fn = getattr(self.s, "test_alerts", None) or getattr(self.s, "alerts", None)
        if fn is None:
            raise RegistryError("the receiver store has no test_alerts(device_id, since) or alerts(): update tools/registry.py")
        try:
            rows = fn(device_id, since_unix)
        except TypeError:
            rows = fn(device_id=device_id)
        out = []
        for r in rows or []:
            d = r if isinstance(r, dict) else getattr(r, "__dict__", {})
            if d.get("test") or d.get("kind") == "test" or d.get("label") == "test":
                out.append(d)
        return out


def _safe(e):
    """An exception's message, one line, never containing hex key material."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
    import re

    return re.sub(r"[0-9a-fA-F]{32,}", "<redacted>", msg)
