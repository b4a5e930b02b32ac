"""`panic sim run` as people use it: each alert's press -> first frame on
air and press -> ACK in both modes; `--faithful --time-scale X` paces the
MicroPython VM and shows its progress on a terminal (and only there);
the report gets the receiver's lane, the positions it showed and the
battery chart in faithful mode as in virtual time; and every `panic`
command's --help lists each of its subcommands."""

import argparse
import json
import os
import pty
import re
import select
import subprocess
import sys

from tools import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCEN = os.path.join(ROOT, "host_sim", "scenarios")

SHORT = """
[scenario]
name = "short faithful run"
duration = "1m30s"

[gnss]
start = "hot"

[route]
points = [ { at = "0s", lat = 51.50330, lon = -0.11960 } ]

[[action]]
at = "40s"
kind = "sos"

[[tower]]  # the receiver's location database knows it (host_sim/cells.py), in faithful mode too
mcc = 234
mnc = 15
tac = 6699
cell = 30125732
lat = 51.5040
lon = -0.1180
range = 1000

[expect]
alerts = 1
"""

LATENCY = r"press -> first frame on air (\d+\.\d\d) s, press -> ACK (\d+\.\d\d) s"


def panic(*args, timeout=120):
    p = subprocess.run([sys.executable, "-m", "tools", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_run_prints_every_alerts_latencies_in_virtual_time():
    rc, out, err = panic("sim", "run", os.path.join(SCEN, "duress_cancel.toml"))
    assert rc == 0, err
    sos = re.search(r"^  SOS at 3:00, seq \d+: " + LATENCY + "$", out, re.M)
    duress = re.search(r"^  DURESS CANCEL at 5:0\d, seq \d+: " + LATENCY + "$", out, re.M)
    assert sos and duress, out
    # the ready profile in data coverage: on the air at once, the ACK within BS 8484's 5 s
    assert float(sos.group(1)) < 1.0 and float(sos.group(1)) < float(sos.group(2)) < 5.0
    assert out.index("  SOS at") < out.index("  DURESS CANCEL at")


def test_time_scale_belongs_to_faithful_runs():
    rc, out, err = panic("sim", "run", os.path.join(SCEN, "duress_cancel.toml"), "--time-scale", "5")
    assert rc == 2 and "--time-scale paces a --faithful run" in err
    rc, out, err = panic("sim", "run", os.path.join(SCEN, "duress_cancel.toml"), "--faithful", "--time-scale", "0")
    assert rc == 2 and "--time-scale: must be from 0.01 to 1000" in err


def test_faithful_run_at_a_time_scale_shows_progress_on_a_terminal_only(tmp_path):
    path = tmp_path / "short.toml"
    path.write_text(SHORT)
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "tools", "sim", "run", str(path), "--faithful", "--time-scale", "15",
                          "--json", str(tmp_path / "r.json")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    out = p.stdout.read()
    assert p.wait(30) == 0, out + seen.decode("utf-8", "replace")
    os.close(master)
    term = seen.decode("utf-8", "replace")
    # the line is rewritten in place: simulated time of the whole run, wall time, pace, frames and ACKs
    shown = re.findall(r"(\d+):(\d\d) / 1:30 simulated  \d+:\d\d wall  15x  (\d+) frames? on air, (\d+) ACKs?", term)
    assert len(shown) >= 5, term
    sims = [int(m) * 60 + int(s) for m, s, _, _ in shown]
    assert sims == sorted(sims) and sims[-1] == 90
    assert int(shown[-1][2]) >= 2 and int(shown[-1][3]) >= 2  # the boot STATUS and the ALERT, each ACKed
    assert "\r" in term
    # stdout (not a terminal here) has the summary and the alert's latencies, no progress
    assert "simulated in" in out and "(15x real time)" in out and " wall  15x" not in out
    assert re.search(r"^  SOS at 0:40, seq \d+: " + LATENCY + "$", out, re.M), out
    # the report gets what a virtual-time run gives it: the receiver's lane, what it showed, the battery chart
    res = json.loads((tmp_path / "r.json").read_text())
    rx = res["receiver"]
    assert [m["label"] for m in rx["marks"]][-1] == "ALERT"
    cell = [p for p in rx["positions"] if p["source"] == "cell (resolved)"]
    assert cell and "id 30125732" in cell[0]["note"] and cell[0]["error_m"] <= cell[0]["accuracy_m"] == 1000
    assert [b["t_ms"] // 60000 for b in res["battery"]] == [0, 1] and res["battery"][0]["soc_pct"] == 100.0


def _subparsers(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield path + (name,), name in helped
                yield from _subparsers(sub, path + (name,))


def test_every_help_lists_each_of_its_subcommands(capsys):
    missing = [" ".join(p) for p, listed in _subparsers(cli.build_parser()) if not listed]
    assert missing == []
    try:
        cli.main(["receiver", "device", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    for sub in ("add", "list", "show", "retire"):
        assert re.search(r"^    %s\s+\S" % sub, out, re.M), out
    try:
        cli.main(["sim", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    for sub in ("run", "demo", "device", "board"):
        assert re.search(r"^    %s\s+\S" % sub, out, re.M), out
