"""The device's entry point: pick the board, then run the main loop
(firmware/loop.py) forever.

On the board, the root /main.py is one line:
    from firmware.main import main; main()
(`panic flash` writes a shim that does the same for the release it
installed; the config is /data/config.json: FLASH_DIR of the board module
plus config.CONFIG_FILE, as tools/provision.py writes it).

Never returns. Ctrl-C is disabled (micropython.kbd_intr(-1)) so nobody at
the USB port can stop it. On the unix port (faithful mode) the board is
firmware/board_unix.py, whose main() does the same with its own board;
otherwise the ESP32 board is built from the table the config names, and the
table is dropped from RAM once read.

Imports firmware/loop.py and the board modules; nothing imports this module
but the boot shim.

Must stay in sync with: firmware/loop.py, firmware/board_esp32.py,
firmware/board_unix.py.
"""


def main():
    import sys

    import micropython

    micropython.kbd_intr(-1)
    if sys.platform == "linux":  # the unix port: faithful mode (firmware/board_unix.py)
        from firmware.board_unix import main as unix_main

        unix_main()
        return
    from firmware import boards
    from firmware.board import FLASH_DIR
    from firmware.board_esp32 import Esp32Board
    from firmware.fs import Fs
    from firmware.loop import forget, load_config, run

    fs = Fs(FLASH_DIR)
    cfg = load_config(fs)
    table = boards.load(cfg.board)  # validated by load_config: a known name
    board = Esp32Board(table, cfg.pins)
    del table, cfg
    for name in ("firmware.boards.t_sim7600e_ext_gnss", "firmware.boards.t_sim7600e"):
        forget(name)  # the table is read: its text need not stay in RAM
    while True:
        run(board, fs)
