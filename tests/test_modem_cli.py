"""`panic modem`: the engine and emulator from the command line."""

from tools.cli import main


def test_panic_modem_delivers_under_a_fault(capsys):
    rc = main(["modem", "--fault", "open_fail=1", "--fault", "garbage_p=0.05", "--loss", "0.1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ACK verified" in out and "open_failed" in out


def test_panic_modem_sms_only_coverage(capsys):
    rc = main(["modem", "--fault", 'coverage=[[0,"sms"]]', "--sms-after", "30000"])
    assert rc == 0
    assert "ALERT delivered by SMS" in capsys.readouterr().out


def test_panic_modem_rejects_unknown_fault_in_one_line(capsys):
    assert main(["modem", "--fault", "gremlins=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("panic: unknown fault 'gremlins'") and err.count("\n") == 1


def test_panic_modem_rejects_bad_outage(capsys):
    assert main(["modem", "--outage", "soon"]) == 2
    assert "START_MS,END_MS" in capsys.readouterr().err
