"""The fix tracker against gpsd on every log of gpsd's regression corpus
(MicroPython runs this file at 96 KB heap; CPython runs the per-log form in
tests/test_fw_gpsd_corpus.py). What is compared and why: gpsd_compare.py.

The corpus is found at $PANIC_GPSD_CORPUS or tests/data/gpsd (kept in the repository);
when it is absent this test fails with a message saying so (never skips).
"""

import heap
import gc

from gpsd_compare import check_result, compare_log, corpus_dir

heap.release()


def test_gpsd_corpus_agrees():
    d, logs = corpus_dir()
    compared = 0
    agreed = 0
    with_points = 0
    for name in logs:
        r = compare_log(d, name)
        check_result(r)
        compared += r.compared
        agreed += r.compared - r.mode_mismatches - r.pos_mismatches
        if r.compared:
            with_points += 1
        gc.collect()
    assert len(logs) >= 100, "expected gpsd's 103 logs, found %d" % len(logs)
    # the great majority of logs and points are compared and agree
    assert with_points >= len(logs) - 4, with_points
    assert compared > 6000 and agreed * 1000 >= compared * 993, (compared, agreed)
