"""CPython run of the gpsd corpus comparison, one test per log (the same
comparison runs on MicroPython in tests/device/test_fw_gpsd_all.py).
What is compared and why, and the logs with known divergences: see
tests/device/gpsd_compare.py. A missing corpus fails, it does not skip."""

import pytest

from gpsd_compare import EXCEPTIONS, NOTHING_TO_COMPARE, check_result, compare_log, corpus_dir

try:
    _DIR, _LOGS = corpus_dir()
    _MISSING = None
except OSError as e:  # reported by the test below, never skipped
    _DIR, _LOGS, _MISSING = None, ["corpus-missing"], e


@pytest.mark.parametrize("name", _LOGS)
def test_log_matches_gpsd(name):
    if _MISSING is not None:
        raise _MISSING
    check_result(compare_log(_DIR, name))


def test_every_exception_names_a_real_log_with_a_reason():
    if _MISSING is not None:
        raise _MISSING
    for name, (_, _, reason) in EXCEPTIONS.items():
        assert name in _LOGS and len(reason) > 20
    for name, reason in NOTHING_TO_COMPARE.items():
        assert name in _LOGS and len(reason) > 20
