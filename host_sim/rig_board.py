"""`panic sim board`: a provisioned simulated board, powered up with the
firmware running, for the field tools (`panic field selftest|console`)
without hardware.

Owns: the board's folder and what provisioning leaves around a board:

    DIR/board/        the board's flash, its "/" (the release, as `panic
                      flash` lays it out, and /data/config.json)
    DIR/engineer.key  the engineer key (mode 0600), for the field tools
    DIR/master.key    the receiver master key (mode 0600)
    DIR/receiver.db   the receiver store the board reports to, with the
                      device registered (person reference PERSON_REF) and
                      the scenario's towers and Wi-Fi survey in its
                      location database (host_sim/cells.py)

A new folder is provisioned as `panic provision` would (device and
engineer keys made here and never printed, the device registered in the
store); an existing one boots again as it is, like a board that kept its
flash across a power cycle, with the current release put on it as `panic
flash` would. The board itself is host_sim/faithful.py's Rig: the
firmware's main loop in the MicroPython unix port, GNSS, modem and button
over sockets, a real receiver (receiver/server.py) on DIR/receiver.db in
this process, the USB serial on socket://127.0.0.1:PORT.

The world is a bench (BENCH, below): a unit on a desk with a view of the
sky (the modem's GNSS starts hot), full coverage, a full battery; or a
scenario file given by the caller.

Never does: print a key; answer on the console itself (the firmware
does, silent until an engineer authenticates).

Stays in sync with: host_sim/faithful.py (Rig), host_sim/cells.py, host_sim/setup.py
(device_config), tools/provision.py (what a provisioned board holds),
docs/tools.md ("Testing without hardware").
"""

import json
import os

from host_sim import cells
from host_sim import scenario as SC
from host_sim.faithful import PUBLIC_RX, Rig
from host_sim.setup import PERSON_REF, device_config

BENCH = """
[scenario]
name = "simulated board on a bench"
description = "a provisioned unit on a desk: sky view, full coverage, a full battery"
duration = "%(duration)s"

[device]
test_enabled = true  # as `panic provision` leaves it (unless --no-test)

[gnss]
start = "hot"  # the modem's own receiver, with a recent fix

[route]
points = [ { at = "0s", lat = 51.50330, lon = -0.11960 } ]
"""


class BoardFolderError(Exception):
    """DIR cannot hold (or is not) a simulated board: the message says why."""


class BoardFolder:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.root = os.path.join(self.path, "board")
        self.engineer_key = os.path.join(self.path, "engineer.key")
        self.master_key = os.path.join(self.path, "master.key")
        self.db = os.path.join(self.path, "receiver.db")
        self.config = os.path.join(self.root, "data", "config.json")

    def provisioned(self):
        """True for a folder provisioned before (every part present), False
        for a new or empty one; BoardFolderError for anything else."""
        parts = [self.config, self.engineer_key, self.master_key, self.db]
        have = [os.path.exists(p) for p in parts]
        if all(have):
            return True
        if os.path.isdir(self.path) and os.listdir(self.path):
            missing = [os.path.relpath(p, self.path) for p, h in zip(parts, have) if not h]
            raise BoardFolderError("%s is not an empty folder nor a simulated board (it lacks %s)" % (
                self.path, ", ".join(missing)))
        return False

    def provision(self, scenario, device_id):
        """Make the keys, write the board's config and register the device
        in a new store, as `panic provision` does."""
        from receiver import masterkey
        from receiver import store as S

        os.makedirs(os.path.join(self.root, "data"), exist_ok=True)
        key, ekey = os.urandom(32), os.urandom(32)
        cfg = device_config(scenario, key, device_id=device_id, engineer_key=ekey, receiver=PUBLIC_RX)[0]
        _write_private(self.engineer_key, ekey.hex())
        _write_private(self.master_key, masterkey.generate_hex())
        with open(self.config + ".tmp", "w") as f:
            json.dump(cfg, f, sort_keys=True)
        os.replace(self.config + ".tmp", self.config)
        st = S.open_store(self.db, masterkey.load(self.master_key))
        try:
            st.add_device(device_id, key, PERSON_REF, heartbeat_s=(cfg.get("timings") or {}).get("heartbeat_s"),
                          via="panic sim board")
            cells.import_into(st, scenario)  # a --scenario's towers and Wi-Fi survey, as in every simulated run
        finally:
            st.close()

    def device_id(self):
        with open(self.config) as f:
            return json.load(f)["device_id"]


def _write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def bench_scenario(duration_ms, path="<bench>"):
    return SC.loads(BENCH % {"duration": "%dms" % duration_ms}, path)


def boot(folder, scenario, time_scale=None, start_utc_ms=None):
    """The Rig of the board in `folder` (provisioned), started: its
    console is at rig.console_url. The current release is put on the
    board first, as `panic flash` would (its /data is kept)."""
    from host_sim.install import install_release
    from receiver import masterkey

    install_release(folder.root)
    rig = Rig(scenario, root=folder.root, db=folder.db, master=masterkey.load(folder.master_key),
              time_scale=time_scale, start_utc_ms=start_utc_ms)
    try:
        rig.start()
    except BaseException:
        rig.stop()
        raise
    return rig
