"""The link to a board that answers slowly: a real MicroPython board
(host_sim.mpboard) behind a TCP relay that holds every byte from the board
for a while, as a board busy erasing flash or a loaded host would. `panic
flash` writes files by mpremote's raw paste, whose flow control waits for
the board's "send more" byte; a slow answer is still an answer."""

import socket
import threading
import time

import pytest

from host_sim.mpboard import MpBoard
from tools.board import Board

BOARD_DELAY_S = 0.12  # well above the 50 ms tools.board waits for other answers


class SlowRelay:
    """host <-> board; bytes from the board reach the host BOARD_DELAY_S late."""

    def __init__(self, board_port):
        self.board_port = board_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            host, _ = self.lsock.accept()
        except OSError:
            return
        board = socket.create_connection(("127.0.0.1", self.board_port))
        threading.Thread(target=self._pump, args=(host, board, 0), daemon=True).start()
        self._pump(board, host, BOARD_DELAY_S)

    def _pump(self, src, dst, delay):
        while not self.stop.is_set():
            try:
                data = src.recv(4096)
            except OSError:
                break
            if not data:
                break
            time.sleep(delay)
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.lsock.close()


@pytest.fixture
def slow_board(tmp_path):
    b = MpBoard(str(tmp_path / "root")).start()
    relay = SlowRelay(b.port)
    try:
        yield b, "socket://127.0.0.1:%d" % relay.port
    finally:
        relay.close()
        b.stop()


def test_a_file_larger_than_the_paste_window_reaches_a_slow_board_whole(slow_board):
    b, url = slow_board
    data = bytes(range(256)) * 6  # 1.5 KB: two writes of several raw-paste windows each
    board = Board(url)
    try:
        board.write("/slow.bin", data)
        assert board.read("/slow.bin") == data
    finally:
        board.close()
