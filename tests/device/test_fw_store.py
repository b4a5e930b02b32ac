"""Seq reservation and the state record survive resets and power cuts."""

from mpcheck import raises

from firmware.fs import Fs, MemFs, PowerCut
from firmware.store import BLOCK, LOW_WATER, SeqStore, StateStore, StoreError


def test_first_boot_starts_at_one_and_reserves_a_block():
    fs = MemFs()
    s = SeqStore(fs)
    assert s.take() == 1 and s.take() == 2
    assert fs.files["seq"] == b"S %d\n" % (1 + BLOCK)
    assert fs.writes == 1


def test_resume_after_reset_is_above_every_used_seq():
    fs = MemFs()
    last = 0
    n = 0
    for boot in range(5):
        s = SeqStore(fs)
        for _ in range(boot * 30):
            seq = s.take()
            assert seq > last  # strictly increasing across resets: never reused
            last = seq
            n += 1
            s.maintain()
        # reset without any warning
    s = SeqStore(fs)
    assert s.take() > last and n == 300


def test_maintain_refills_before_the_block_runs_out():
    fs = MemFs()
    s = SeqStore(fs)
    writes = fs.writes
    for _ in range(BLOCK - LOW_WATER + 1):
        s.take()
        s.maintain()
    assert fs.writes == writes + 1  # one refill, done by maintain()
    before = fs.writes
    s.take()  # take() itself did not need to write
    assert fs.writes == before


def test_flash_writes_per_frame_are_one_per_block():
    fs = MemFs()
    s = SeqStore(fs)
    for _ in range(10 * BLOCK):
        s.take()
        s.maintain()
    assert fs.writes <= 11


def test_power_cut_during_reservation_never_reuses():
    # cut at every step of a block reservation; the seqs used before the
    # cut must stay below where the next boot starts
    for cut in range(4):
        fs = MemFs()
        s = SeqStore(fs)
        used = [s.take() for _ in range(BLOCK - 1)]
        fs.cut_at = fs.steps + cut
        try:
            used.append(s.take())
            s.take()
            s.maintain()
        except PowerCut:
            pass
        fs.revive()
        fs.cleanup()
        assert not [n for n in fs.files if n.endswith(".tmp")]
        s2 = SeqStore(fs)
        assert s2.take() > max(used), cut


def test_broken_seq_file_is_a_fault_and_starts_above_the_floor():
    fs = MemFs({"seq": b"S 12x\n"})
    s = SeqStore(fs, floor=500)
    assert s.fault == "seq file unreadable"
    assert s.take() >= 500
    fs = MemFs({"seq": b"\xff\xfe"})
    s = SeqStore(fs, floor=7)
    assert s.fault and s.take() >= 7


def test_floor_from_outbox_wins_over_a_lower_ceiling():
    fs = MemFs({"seq": b"S 10\n"})
    s = SeqStore(fs, floor=300)
    assert s.take() == 300 and s.fault is None


def test_seq_space_exhaustion_is_an_error_not_a_wrap():
    fs = MemFs({"seq": b"S 4294967295\n"})
    s = SeqStore(fs)
    raises(StoreError, s.take)


def test_state_record_round_trip_and_writes_only_on_change():
    fs = MemFs()
    st = StateStore(fs)
    assert st.load() is None
    assert st.save(2, True, 30, 17)
    assert not st.save(2, True, 30, 17)
    assert fs.writes == 1
    assert StateStore(fs).load() == (2, 1, 30, 17)


def test_broken_state_file_is_a_fault_not_a_crash():
    for bad in (b"A 1 0 30\n", b"A 1 0 30 x\n", b"junk", b"A 1 0 30 5", b"\xff"):
        st = StateStore(MemFs({"state": bad}))
        assert st.load() is None and st.fault == "state file unreadable"


def test_memfs_commits_only_on_close():
    fs = MemFs({"x": b"old"})
    for cut in range(4):
        fs.revive()
        fs.cut_at = cut
        raises(PowerCut, fs.write_atomic, "x", b"new")
        assert fs.files["x"] == b"old"
    fs.revive()
    fs.cleanup()
    assert sorted(fs.files) == ["x"]


def _rmtree(path):
    import os

    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        os.remove(path + "/" + n)
    os.rmdir(path)


def test_real_directory_fs_atomic_write_and_cleanup():
    import os

    try:
        os.mkdir("build")
    except OSError:
        pass
    root = "build/fw_fs_test"
    _rmtree(root)
    fs = Fs(root)
    fs.write_atomic("a", b"one")
    assert fs.read("a") == b"one"
    for cut in range(4):
        fs.cut_at = fs.steps + cut
        raises(PowerCut, fs.write_atomic, "a", b"two")
        fs.cut_at = -1
        assert fs.read("a") == b"one"
    fs.cleanup()
    assert sorted(fs.listdir()) == ["a"]
    assert fs.remove("a") and not fs.remove("a")
    assert fs.read("a") is None
    _rmtree(root)
