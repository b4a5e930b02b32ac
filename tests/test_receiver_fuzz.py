"""A small, fast sample of the receiver fuzzers `make fuzz` runs at
100,000 inputs each (tests/fuzz_receiver.py): the TCP and the HTTP front
end over real sockets, with no escaped exception, no answer that is not
what the protocol allows, and a real device still served at the end.
RECEIVER_FUZZ_INPUTS sets the sample size."""

import os

import fuzz_receiver as FZ

N = int(os.environ.get("RECEIVER_FUZZ_INPUTS", "3000"))


def test_tcp_front_end_fuzz_sample():
    fig = FZ.run("tcp", N, seed=7, out=lambda *_: None)
    assert fig["inputs"] == N
    assert fig["escapes"] == [] and fig["bad_answers"] == {}
    rc = fig["receiver"]
    assert rc["accepted"] > 0 and rc["bad tag"] > 0 and rc["bad stream length"] > 0  # the sample reached each path


def test_http_front_end_fuzz_sample():
    fig = FZ.run("http", N, seed=7, out=lambda *_: None)
    assert fig["inputs"] == N
    assert fig["escapes"] == [] and fig["bad_answers"] == {}
    got = fig["client"]
    assert got["status 200"] > 0 and got["status 400"] > 0 and got["status 413"] > 0 and got["status 422"] > 0
