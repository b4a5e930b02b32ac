"""The Traccar feed: positions and alarms as OsmAnd requests, read by a
local server the way Traccar's OsmAndProtocolDecoder reads them; queued
like the ARC's, never holding the ARC's up."""

import asyncio
import time

from protocol import frame as F
from receiver.forward.forwarder import Forwarder
from recv_helpers import Dev
from test_forward_link import delivered, run_until, setup
from test_forward_peers import OsmAndServer, OwnArc, free_port

GNSS = dict(source=F.SRC_GNSS, lat=515007292, lon=-1246254, accuracy=6, age=3, battery=64)


def test_positions_and_alarms_reach_the_map(tmp_path):
    srv = OsmAndServer(known={"panic-21"})
    d, other = Dev(21), Dev(22)
    try:
        st, rx = setup(tmp_path, {"map": {"kind": "traccar", "url": "http://127.0.0.1:%d/" % srv.port,
                                          "id_template": "panic-{device_id}"}}, [d, other])
        # frames stamped now: a fix is never dated after its frame arrived (receiver/estimate.py), so a frame
        # time ahead of this machine's clock would move the fix's time to the arrival
        t = int(time.time())
        frames = [d.frame(F.ALERT, t=t, **GNSS), d.frame(F.TRACK, t=t, **dict(GNSS, lat=515010000)),
                  d.frame(F.CANCEL, t=t, **GNSS), d.frame(F.HEARTBEAT, t=t, battery=4), other.frame(F.ALERT, t=t, **GNSS)]
        run_until(st, rx, frames, delivered)
        pos = srv.positions
        assert [p["attributes"]["event"] for p in pos] == ["alert", "track", "cancel", "low_battery"]
        a = pos[0]
        assert a["device"] == "panic-21" and a["lat"] == 51.5007292 and a["lon"] == -0.1246254
        assert a["accuracy"] == 6.0 and a["batteryLevel"] == 64.0 and a["valid"] is True
        assert a["time"] == (t - 3) * 1000 and a["attributes"]["alarm"] == "sos"
        assert pos[1]["lat"] == 51.501 and "alarm" not in pos[1]["attributes"]
        assert pos[3]["attributes"]["alarm"] == "lowBattery" and "lat" not in pos[3]  # Traccar keeps its last fix
        assert all(m == "POST" for m, _ in srv.requests)
        q = {r["device_id"]: r for r in st.forward_queue_rows() if r["event_kind"] == "alert"}
        assert q[22]["state"] == "refused" and q[22]["detail"] == "HTTP 400" and q[22]["attempts"] == 1
    finally:
        srv.close()


def test_a_map_that_is_down_does_not_hold_up_the_arc(tmp_path):
    port = free_port()
    arc = OwnArc()
    d = Dev(23)
    try:
        st, rx = setup(tmp_path, {"arc": {"paths": ["127.0.0.1:%d" % arc.port]},
                                  "map": {"kind": "traccar", "url": "http://127.0.0.1:%d/" % port}}, [d])
        async def main():
            async def call(fn, *a):
                return fn(*a)

            fw = Forwarder(st, rx.outbox.targets, call, rescan_s=0.1)
            rx.outbox.on_queued = fw.kick
            await fw.start()
            try:
                assert rx.handle_frame(d.frame(F.ALERT, **GNSS))
                end = time.monotonic() + 10
                while not [r for r in st.forward_queue_rows() if r["target"] == "arc" and r["state"] == "delivered"]:
                    assert time.monotonic() < end
                    await asyncio.sleep(0.05)
                assert [r["state"] for r in st.forward_queue_rows() if r["target"] == "map"] == ["pending"]
                await asyncio.sleep(1.0)
                assert fw.counters["forward traccar retry"] >= 1
            finally:
                await fw.close()

        asyncio.run(main())
        srv = OsmAndServer(known={"23"}, port=port)  # the map comes up where it was configured
        try:
            run_until(st, rx, [], delivered)
            assert [p["device"] for p in srv.positions] == ["23"]
        finally:
            srv.close()
    finally:
        arc.close()

