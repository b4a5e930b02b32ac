"""Only firmware/main.py and the board module touch the hardware: no other
device source file imports `machine`, `esp32` or `network`."""

import os

ALLOWED = ("main.py", "board_esp32.py")
HW = ("machine", "esp32", "network")


def _py_files(d):
    for name in sorted(os.listdir(d)):
        path = d + "/" + name
        if name.endswith(".py"):
            yield path
        elif "." not in name and name != "__pycache__":
            try:
                os.listdir(path)
            except OSError:
                continue
            for p in _py_files(path):
                yield p


def _imports(path):
    with open(path) as f:
        for line in f:
            s = line.strip()
            if s.startswith("import ") or s.startswith("from "):
                mod = s.split()[1].split(".")[0].rstrip(",")
                yield mod


def test_only_main_and_board_import_hardware():
    seen = 0
    for d in ("firmware", "protocol"):
        for path in _py_files(d):
            seen += 1
            if path.split("/")[-1] in ALLOWED and path.startswith("firmware/"):
                continue
            for mod in _imports(path):
                assert mod not in HW, "%s imports %s" % (path, mod)
    assert seen > 15, seen


def test_board_module_does_use_the_hardware():
    assert "machine" in list(_imports("firmware/board_esp32.py"))
