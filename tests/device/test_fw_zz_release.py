"""Only firmware/main.py and the board module touch the hardware: no other
device source file imports `machine`, `esp32` or `network`. The device
code's own imports (lazy ones inside functions included) point one way:
no module imports, directly or through others, a module that imports it,
and only the boot shim imports firmware.main."""

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


def _module_file(mod):
    base = mod.replace(".", "/")
    for path in (base + ".py", base + "/__init__.py"):
        try:
            open(path).close()
            return path
        except OSError:
            pass
    return None


def _project_imports(path):
    """The project modules a source file imports, at any indentation:
    "from a.b import c" names a.b.c when that is a module, else a.b."""
    out = []
    with open(path) as f:
        for line in f:
            w = line.strip().split()
            if len(w) < 2 or w[0] not in ("import", "from") or w[1].split(".")[0] not in ("firmware", "protocol"):
                continue
            mod = w[1].rstrip(",")
            if w[0] == "from" and len(w) > 3 and w[2] == "import":
                sub = mod + "." + w[3].rstrip(",")
                if _module_file(sub) is not None:
                    mod = sub
            if mod not in out:
                out.append(mod)
    return out


def _graph():
    g = {}
    for d in ("firmware", "protocol"):
        for path in _py_files(d):
            mod = path[:-3].replace("/", ".")
            if mod.endswith(".__init__"):
                mod = mod[: -len(".__init__")]
            g[mod] = [m for m in _project_imports(path) if m != mod]
    return g


def test_device_imports_have_no_cycle():
    g = _graph()
    assert "firmware.loop" in g and "firmware.modem.engine" in g["firmware.modem.sim7600"], g.get("firmware.modem.sim7600")
    done = {}  # module -> True once every path from it is known to be acyclic
    for root in g:
        stack = [(root, 0)]
        path = [root]
        while stack:
            mod, i = stack[-1]
            deps = g.get(mod, ())
            if i >= len(deps):
                stack.pop()
                path.pop()
                done[mod] = True
                continue
            stack[-1] = (mod, i + 1)
            nxt = deps[i]
            if nxt in done or nxt not in g:
                continue
            assert nxt not in path, "import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt])
            stack.append((nxt, 0))
            path.append(nxt)


def test_only_the_boot_shim_imports_main():
    g = _graph()
    users = [m for m, deps in g.items() if "firmware.main" in deps]
    assert users == [], users
    assert "firmware.loop" in g["firmware.main"] and "firmware.loop" in g["firmware.board_unix"]
