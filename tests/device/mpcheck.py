"""Tiny assertion helpers shared by the device tests on both interpreters."""


def raises(exc, fn, *args, **kw):
    """Call fn; fail unless it raises exc. Returns the exception."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc.__name__))


def load_vectors(path="protocol/vectors.json"):
    """Yield each vector of the vectors file, one line at a time, so the
    96 KB MicroPython heap never holds the whole file parsed."""
    import json

    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('{"name"'):
                if line.endswith(","):
                    line = line[:-1]
                yield json.loads(line)


def unhex(s):
    import binascii

    return binascii.unhexlify(s)


def hexs(b):
    import binascii

    return binascii.hexlify(b).decode()
