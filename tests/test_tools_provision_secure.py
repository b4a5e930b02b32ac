"""`panic provision --secure` (issue 15, keys at rest): the flash-encryption
eFuses burned by the real espefuse on its virtual eFuses (--virt
--path-efuse-file), never a real chip, for a board that is the MicroPython
unix port (host_sim.mpboard); read back by a separate espefuse run."""

import json
import os
import stat
import subprocess
import sys

import pytest
import test_tools_provision as _tp

from tools import cli
from tools import provision as PV
from tools.errors import Refused, UsageError
from tools.registry import MemoryRegistry

# The flashed board of tests/test_tools_provision.py: a folder flashed once, copied per test.
release, flashed_root, flashed = _tp.release, _tp.flashed_root, _tp.flashed


def _args(board, tmp_path, *extra, device_id=42):
    argv = ["provision", "--port", board.url, "--device-id", str(device_id), "--receiver", "arc.example.org:7700",
            "--sms-number", "+447700900123", "--listen-number", "+447700900456", "--apn", "internet",
            "--person-ref", "URN-2026-0042", "--db", str(tmp_path / "rx.db"),
            "--engineer-key-out", str(tmp_path / "keys" / "dev.key"), "--secure",
            "--efuse-virt", str(tmp_path / "efuse.bin")] + list(extra)
    return cli.build_parser().parse_args(argv)


def _efuses(path):
    """The virtual chip's eFuses, read by espefuse itself."""
    p = subprocess.run([sys.executable, "-m", "espefuse", "--chip", "esp32", "--virt", "--path-efuse-file", str(path),
                        "summary", "--format", "json"], capture_output=True, text=True, check=True)
    return json.loads(p.stdout[p.stdout.index("{"):])


def _burn(path, *args):
    subprocess.run([sys.executable, "-m", "espefuse", "--chip", "esp32", "--virt", "--path-efuse-file", str(path),
                    "--do-not-confirm"] + list(args), capture_output=True, check=True)


def _provisioned(board):
    return os.path.exists(os.path.join(board.root, "data", "config.json"))


def test_secure_burns_the_flash_key_protected_then_provisions(flashed, tmp_path, capsys):
    reg = MemoryRegistry()
    cfg = PV.provision(_args(flashed, tmp_path, "--confirm-burn", "42"), reg)
    ef = _efuses(tmp_path / "efuse.bin")
    assert ef["BLOCK1"]["readable"] is False and ef["BLOCK1"]["writeable"] is False
    assert ef["FLASH_CRYPT_CONFIG"]["value"] == 0xF
    assert ef["FLASH_CRYPT_CNT"]["value"] == 0  # encryption itself starts at the release build's first boot
    assert _provisioned(flashed) and reg.key_of(42).hex() == cfg["key_hex"]
    out = capsys.readouterr().out
    assert "no copy of the key exists off the chip" in out
    assert not [d for d in os.listdir(tmp_path) if d.startswith("panic-fek-")]
    for secret in (cfg["key_hex"], cfg["engineer_key_hex"]):
        assert secret not in out


def test_the_flash_key_is_kept_only_when_asked_and_private(flashed, tmp_path, capsys):
    keep = tmp_path / "factory" / "fek-42.bin"
    burned = []

    def rand(n):
        b = os.urandom(n)
        burned.append(b)
        return b

    PV.provision(_args(flashed, tmp_path, "--confirm-burn", "42", "--flash-key-out", str(keep)), MemoryRegistry(),
                 rand=rand)
    assert keep.read_bytes() == burned[0] and len(burned[0]) == 32  # the first random bytes: the eFuse key
    assert stat.S_IMODE(os.stat(keep).st_mode) == 0o600
    assert burned[0].hex() not in capsys.readouterr().out


@pytest.mark.parametrize("extra, err", [
    ((), "confirm with --confirm-burn 42"),
    (("--confirm-burn", "41"), "does not match --device-id 42"),
])
def test_without_a_matching_confirmation_nothing_is_burned_or_written(flashed, tmp_path, extra, err):
    with pytest.raises(UsageError, match=err):
        PV.provision(_args(flashed, tmp_path, *extra), MemoryRegistry())
    assert not os.path.exists(tmp_path / "efuse.bin") and not _provisioned(flashed)


def test_at_a_terminal_the_device_id_must_be_typed(flashed, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    asked = []
    with pytest.raises(Refused, match="not confirmed"):
        PV.provision(_args(flashed, tmp_path), MemoryRegistry(), ask=lambda q: asked.append(q) or "yes")
    assert "cannot be undone" in asked[0] and "(42)" in asked[0]
    assert not os.path.exists(tmp_path / "efuse.bin") and not _provisioned(flashed)
    PV.provision(_args(flashed, tmp_path), MemoryRegistry(), ask=lambda q: "42\n")
    assert _efuses(tmp_path / "efuse.bin")["FLASH_CRYPT_CONFIG"]["value"] == 0xF and _provisioned(flashed)


def test_a_rerun_with_force_finds_the_key_burned_and_goes_on(flashed, tmp_path, capsys):
    reg = MemoryRegistry()
    PV.provision(_args(flashed, tmp_path, "--confirm-burn", "42"), reg)
    before = (tmp_path / "efuse.bin").read_bytes()
    PV.provision(_args(flashed, tmp_path, "--confirm-burn", "7", "--force", device_id=7), reg)
    assert "already burned" in capsys.readouterr().out
    assert (tmp_path / "efuse.bin").read_bytes() == before  # nothing burned twice


@pytest.mark.parametrize("setup, why", [
    (("burn-efuse", "FLASH_CRYPT_CNT", "1"), "already encrypted"),
    (("burn-efuse", "FLASH_CRYPT_CONFIG", "0x3"), "did not burn"),
    (("burn-efuse", "CODING_SCHEME", "1"), "3/4 coding scheme"),
])
def test_a_chip_in_another_state_is_refused_before_anything_changes(flashed, tmp_path, setup, why):
    ef = tmp_path / "efuse.bin"
    _burn(ef, *setup)
    before = ef.read_bytes()
    with pytest.raises(Refused, match=why):
        PV.provision(_args(flashed, tmp_path, "--confirm-burn", "42"), MemoryRegistry())
    assert ef.read_bytes() == before and not _provisioned(flashed)
    assert not os.path.exists(tmp_path / "keys" / "dev.key")


def test_cli_secure_refusal_is_one_line_with_its_exit_code(flashed, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PANIC_RECEIVER_KEY", "ab" * 32)
    argv = ["provision", "--port", flashed.url, "--device-id", "42", "--receiver", "arc.example.org:7700",
            "--sms-number", "+447700900123", "--listen-number", "+447700900456", "--apn", "internet",
            "--person-ref", "URN-2026-0042", "--db", str(tmp_path / "rx.db"), "--secure",
            "--efuse-virt", str(tmp_path / "efuse.bin")]
    assert cli.main(argv) == UsageError.exit_code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--confirm-burn 42" in err
