"""Random scenarios (presses, coverage gaps, power cuts, receiver outages,
flat cells, unknown clocks) through the whole virtual-time simulation: the
product's promises hold in every one. SIM_RANDOM_EXAMPLES=200 for a long
run (the default keeps `make test` quick)."""

import os

from hypothesis import HealthCheck, given, settings

from host_sim import runner
from host_sim import scenario as S
from sim_strategies import scenario_texts

EXAMPLES = int(os.environ.get("SIM_RANDOM_EXAMPLES", "20"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_texts(max_minutes=20))
def test_invariants_hold_in_random_scenarios(text):
    sc = S.loads(text, "random.toml")
    res = runner.run(sc)
    bad = [i for i in res["invariants"] if not i["ok"]]
    assert bad == [], "%s\n%s" % (bad, text)
    assert res["summary"]["firmware_exceptions"] == 0, [e for e in res["events"] if e["kind"] == "firmware_exception"]
    assert res["summary"]["haptic_calls"] == 0
