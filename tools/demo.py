"""`panic demo`: an ALERT with a location goes over a real local TCP socket
to a minimal verifier, which checks it, ACKs it, and prints what it saw.

This is the foundation's demo: real frames, real keys, a real socket. The
simulator replaces the hand-built frame with a simulated device.
"""

import os
import socket
import threading
import time

from protocol import frame as F
from protocol import jsonform, stream
from protocol.crypto import DeviceKeys
from protocol.errors import ProtocolError

DEVICE_ID = 1001


def _recv_frame(sock, deframer):
    while True:
        data = sock.recv(512)
        if not data:
            return None
        frames = deframer.feed(data)
        if frames:
            return frames[0]


def verifier(server, keys, seen):
    """Accept one connection, verify one uplink frame, ACK it."""
    conn, _ = server.accept()
    with conn:
        conn.settimeout(5)
        raw = _recv_frame(conn, stream.Deframer())
        try:
            fr = F.decode(keys, raw, F.UPLINK)
        except ProtocolError as e:
            seen.append(("rejected", e.reason))
            return
        seen.append(("verified", fr, time.monotonic()))
        ack = F.Frame(F.ACK, fr.device_id, 1, int(time.time()), F.Ack(fr.seq, [(F.C_TRACKING, 30)]))
        conn.sendall(stream.pack(F.encode(keys, ack)))


def run_demo(out=print):
    master = os.urandom(32)
    keys = DeviceKeys(master)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    seen = []
    t = threading.Thread(target=verifier, args=(server, keys, seen), daemon=True)
    t.start()

    report = F.Report(
        F.SRC_GNSS, 515007292, -1246254, 4, 0, 87, 21,
        tlvs=[(F.T_CELL, (234, 15, 0x1A2B, 0x01C2D3E4, -97)), (F.T_GNSS, (9, 11))],
    )
    alert = F.Frame(F.ALERT, DEVICE_ID, 1, int(time.time()), report)
    raw = F.encode(keys, alert)
    out("device %d: hidden-button pattern completed, sending ALERT seq 1 (%d bytes) to 127.0.0.1:%d" % (DEVICE_ID, len(raw), port))
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(stream.pack(raw))
        ack_raw = _recv_frame(c, stream.Deframer())
    t.join(5)
    server.close()
    if not seen or seen[0][0] != "verified":
        out("receiver rejected the alert: %s" % (seen[0][1] if seen else "nothing received"))
        return 1
    fr = seen[0][1]
    d = jsonform.to_dict(fr)
    out("receiver: VERIFIED %s from device %d seq %d" % (d["type"], d["device_id"], d["seq"]))
    out("  position  lat %.7f lon %.7f (source %s, accuracy %s m, age %s s)" % (d["lat"], d["lon"], d["source"], d["accuracy_m"], d["age_s"]))
    out("  map       https://www.openstreetmap.org/?mlat=%.7f&mlon=%.7f#map=18/%.7f/%.7f" % (d["lat"], d["lon"], d["lat"], d["lon"]))
    out("  battery   %s%%, signal csq %s" % (d["battery"], d["csq"]))
    try:
        ack = F.decode(keys, ack_raw, F.DOWNLINK)
    except (ProtocolError, TypeError) as e:
        out("device: ACK did not verify (%s); the device would keep retrying" % e)
        return 1
    out("device: authenticated ACK for seq %d after %.1f ms; tracking every %d s" % (
        ack.body.acked_seq, (time.monotonic() - t0) * 1000, ack.body.command(F.C_TRACKING)[1]))
    return 0


def cmd_demo(args):
    return run_demo()


def register(sub):
    p = sub.add_parser("demo", help="send a verified ALERT with a location to a local receiver")
    p.set_defaults(func=cmd_demo)
