from mpcheck import raises

from protocol import stream
from protocol.errors import BadLength


def test_deframer_whole_and_byte_by_byte():
    frames = [bytes([i]) * (31 + i) for i in range(5)]
    wire = b"".join(stream.pack(f) for f in frames)
    assert stream.Deframer().feed(wire) == frames
    d = stream.Deframer()
    got = []
    for i in range(len(wire)):
        got.extend(d.feed(wire[i : i + 1]))
    assert got == frames and d.pending() == 0


def test_deframer_rejects_impossible_lengths():
    raises(BadLength, stream.Deframer().feed, b"\x00\x05hello")
    raises(BadLength, stream.Deframer().feed, b"\xff\xff")
    d = stream.Deframer()
    raises(BadLength, d.feed, b"\x01\x20")  # 288 > 286
    assert d.pending() == 0


def test_a_frame_completed_before_a_bad_prefix_is_handed_out():
    # issue 15, D6: the good frame arrives in the same read as the garbage
    good = bytes(range(40))
    d = stream.Deframer()
    assert d.feed(stream.pack(good) + b"\x00\x05hello") == [good]
    assert d.broken == "stream frame length 5" and d.pending() == 0
    raises(BadLength, d.feed, stream.pack(good))  # the stream stays broken: the caller closes it
    raises(BadLength, d.feed, b"")


def test_frames_before_a_bad_prefix_byte_by_byte_and_split():
    frames = [bytes([i]) * (31 + i) for i in range(3)]
    wire = b"".join(stream.pack(f) for f in frames) + b"\xff\xff" + stream.pack(frames[0])
    for cut in range(len(wire) + 1):  # every split of the wire into two reads
        d = stream.Deframer()
        got = []
        try:
            got.extend(d.feed(wire[:cut]))
            got.extend(d.feed(wire[cut:]))
        except BadLength:
            pass
        assert got == frames, cut
        assert d.broken == "stream frame length 65535"
    d = stream.Deframer()
    got = []
    for i in range(len(wire)):
        try:
            got.extend(d.feed(wire[i : i + 1]))
        except BadLength:
            break
    assert got == frames and d.broken is not None


def test_deframer_with_trailing_partial_frame_keeps_it():
    f = bytes(50)
    d = stream.Deframer()
    assert d.feed(stream.pack(f) + stream.pack(f)[:10]) == [f]
    assert d.pending() == 10 and d.broken is None
    assert d.feed(stream.pack(f)[10:]) == [f] and d.pending() == 0
