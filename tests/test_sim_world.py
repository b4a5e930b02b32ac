"""World: scenario events land on the clock with their side effects."""

from host_sim import scenario as S
from host_sim.world import World

BASE = """
[scenario]
name = "w"
duration = "10m"

[device]
board = "t-sim7600e-ext-gnss"  # an NMEA module on UART2, on from boot

[route]
points = [ { at = 0, lat = 54.0, lon = -2.0 }, { at = "10m", lat = 54.01, lon = -2.0 } ]
"""


def build(extra, **kw):
    return World(S.loads(BASE + extra, "w.toml"), **kw)


def recorder():
    log = []

    def h(name):
        return lambda *a: log.append((name,) + a)

    names = ("action", "button", "power", "arm_flash_cut", "coverage", "receiver", "modem_faults", "brownout", "end")
    return log, {n: h(n) for n in names}


def test_events_fire_at_their_times_in_order():
    w = build(
        '\n[[coverage]]\nfrom = 0\nmode = "data+sms"\n\n[[coverage]]\nfrom = "2m"\nmode = "none"\n'
        '\n[[receiver_down]]\nfrom = "3m"\nto = "4m"\n'
        '\n[[action]]\nat = "1m"\nkind = "raw"\npresses = [[0, 100]]\n'
        '\n[[modem_fault]]\nfrom = "5m"\nto = "6m"\nname = "no_carrier"\n',
    )
    log, h = recorder()
    w.start(h)
    w.run()
    got = [(e[0], e[-1]) for e in log]
    assert got == [
        ("coverage", 0),
        ("action", 60_000),
        ("button", 60_000),
        ("button", 60_100),
        ("coverage", 120_000),
        ("receiver", 180_000),
        ("receiver", 240_000),
        ("modem_faults", 300_000),
        ("modem_faults", 360_000),
        ("end", 600_000),
    ]
    assert log[1][1] == "raw" and log[2][1] is True and log[3][1] is False
    assert log[7][1] == {"no_carrier": True} and log[8][1] == {}
    kinds = [e["kind"] for e in w.events]
    assert kinds == ["coverage", "action", "coverage", "receiver_down"]


def test_power_cut_disconnects_battery_and_gnss_then_restores():
    w = build('\n[[power_cut]]\nat = "1m"\nduration = "10s"\n')
    log, h = recorder()
    w.start(h)
    w.clock.run_until(30_000)
    assert w.gnss.on
    w.clock.run_until(61_000)
    assert not w.powered and not w.gnss.on and w.battery_mv() == 0
    w.clock.run_until(71_000)
    assert w.powered and w.battery_mv() > 3000 and not w.never_back
    assert [e[:2] for e in log if e[0] == "power"] == [("power", False), ("power", True)]
    # the GNSS lost its backup: the next start is cold
    w.set_state("gnss", "acquire")
    assert w.gnss.last_start == "cold"


def test_flash_write_cut_is_armed_then_taken_by_the_flash():
    w = build('\n[[power_cut]]\nat = "1m"\nat_flash_write = 2\nduration = "never"\n')
    log, h = recorder()
    w.start(h)
    w.clock.run_until(90_000)
    assert ("arm_flash_cut", 2, 60_000) in log and w.powered and not w.never_back
    w.flash_cut()  # the simulated flash reached its 2nd write
    assert not w.powered and w.never_back  # the device is gone for good
    w.run()
    assert not w.powered  # never restored
    assert w.events[-1]["detail"] == "at flash write"


def test_a_flat_cell_browns_out_under_tx_and_the_run_knows_when():
    w = build("\n[battery]\nstart_pct = 4\n")
    log, h = recorder()
    w.start(h)
    w.clock.run_until(5000)
    assert not w.dead
    w.set_state("modem", "tx")
    w.clock.run_until(5001)
    assert w.dead and ("brownout", 5000) in log
    assert w.events[-1]["kind"] == "brownout"


def test_a_slowly_draining_cell_browns_out_at_the_predicted_time():
    w = World(S.loads(BASE.replace('"10m"\n', '"30h"\n', 1) + "\n[battery]\nstart_pct = 5\ncapacity_mah = 100\n", "w.toml"))
    log, h = recorder()
    w.start(h)
    w.set_state("esp32", "idle")
    w.set_state("modem", "idle")
    w.run()
    b = [e for e in log if e[0] == "brownout"]
    assert len(b) == 1 and 60_000 < b[0][1] < 30 * 3_600_000
    # at that moment the board voltage was at the brown-out line
    assert w.energy.battery_mv() <= w.energy.brownout_mv + 1 or not w.energy.power_connected


def test_named_actions_need_the_firmware_patterns():
    w = build('\n[[action]]\nat = "1m"\nkind = "sos"\n', patterns={"sos": [(0, 100), (300, 100), (600, 100)]})
    log, h = recorder()
    w.start(h)
    w.run()
    assert [e[-1] for e in log if e[0] == "button"] == [60_000, 60_100, 60_300, 60_400, 60_600, 60_700]


def test_named_actions_without_patterns_are_an_error_not_skipped():
    import pytest

    w = build('\n[[action]]\nat = "1m"\nkind = "sos"\n')
    with pytest.raises(S.ScenarioError, match="no button pattern"):
        w.start({})


def test_every_shipped_scenario_runs_its_world_to_the_end_quickly():
    pats = {k: [(0, 100), (300, 100), (600, 100)] for k in ("sos", "cancel", "duress_cancel", "test")}
    for p in S.shipped():
        w = World(S.load(p), patterns=pats)
        w.start({})
        w.run()
        assert w.clock.now == w.scenario.duration_ms


from hypothesis import given, settings  # noqa: E402
from sim_strategies import scenario_texts  # noqa: E402

PATTERNS = {k: [(0, 100), (300, 100), (600, 100)] for k in ("sos", "cancel", "duress_cancel", "test")}


@settings(max_examples=30, deadline=None)
@given(scenario_texts(max_minutes=20))
def test_generated_scenarios_load_and_their_world_runs_with_valid_nmea(text):
    import pynmea2

    sc = S.loads(text, "gen.toml")
    w = World(sc, patterns=PATTERNS)
    seen = []
    buf = [b""]

    def read_gnss(now):
        if w.gnss.on:
            buf[0] += w.gnss.read(now)
        w.clock.after(1000, read_gnss, w.clock.now + 1000)

    def power(on, now):
        seen.append(("power", on, now))
        if not on:  # a cut may leave half a sentence: check only whole bursts before it
            whole = buf[0].rsplit(b"\r\n", 1)[0] + b"\r\n" if b"\r\n" in buf[0] else b""
            done.append(whole)
            buf[0] = b""

    done = []
    w.start({"power": power, "end": lambda now: seen.append(("end", now))})
    w.clock.at(0, read_gnss, 0)
    w.run()
    assert seen[-1] == ("end", sc.duration_ms) or w.dead
    for ln in b"".join(done + [buf[0]]).split(b"\r\n")[:-1]:
        pynmea2.parse(ln.decode("ascii"), check=True)
    # power cuts alternate off/on, never two restores in a row
    states = [on for k, on, _ in (e for e in seen if e[0] == "power")]
    assert all(a != b for a, b in zip(states, states[1:], strict=False))


def test_end_is_the_last_event_at_its_instant():
    # a 1 s cut at 156 s of a 157 s run: power comes back at the very end,
    # and the end handler sees the device powered again
    text = ('[scenario]\nname = "tie"\nduration = 157\n[route]\npoints = [ { at = "0s", lat = 54.3, lon = -2.7 } ]\n'
            '[[power_cut]]\nat = 156\nduration = 1\n')
    w = World(S.loads(text, "tie.toml"), patterns=PATTERNS)
    seen = []
    w.start({"power": lambda on, now: seen.append(("power", on, now)),
             "end": lambda now: seen.append(("end", now, w.powered))})
    w.run()
    assert seen == [("power", False, 156000), ("power", True, 157000), ("end", 157000, True)]
