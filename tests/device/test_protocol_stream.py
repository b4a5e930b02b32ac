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
