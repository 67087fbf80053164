"""Flashing over the serial path: mpremote's real transport against a board that speaks
MicroPython's raw REPL and runs every command on the real `micropython` binary.

Boards are unplugged mid-copy, run the wrong MicroPython, or are not there at all; after
each, the board is either as it was or finished by running flash again, never half-done.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from safebox.tools.installer import cli
from safebox.tools.installer.board import FolderBoard, SerialBoard, find_port
from safebox.tools.installer.fakeboard_thread import FakeBoardThread
from safebox.tools.installer.flash import MANIFEST, TMP, Image, flash
from safebox.tools.installer.messages import InstallerError

MPREMOTE = Path(sys.executable).with_name("mpremote")


@pytest.fixture(autouse=True)
def _no_reconnect_pause(monkeypatch):
    """pyserial's socket:// close sleeps 0.3 s for servers slow to accept again; the fake board is not."""
    from serial.urlhandler import protocol_socket
    monkeypatch.setattr(protocol_socket, "time", types.SimpleNamespace(sleep=lambda s: None))


@pytest.fixture(scope="module")
def image(device_image: Path) -> Image:
    return Image.from_dir(device_image)


@pytest.fixture
def board(tmp_path: Path):
    with FakeBoardThread(tmp_path / "flash") as fake:
        yield fake


def _on_board(folder: Path) -> dict[str, str]:
    """sha256 of every file in a board's flash folder, by board path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_consistent(folder: Path, image: Image) -> None:
    files = _on_board(folder)
    assert not [p for p in files if p.endswith(TMP)], "temporary files left behind"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["files"] == image.hashes and manifest["image_id"] == image.image_id
    assert {p: h for p, h in files.items() if p != MANIFEST and p != "config.json"} == image.hashes


# -- the fake board is a faithful board ----------------------------------------------------
def test_mpremote_transport_talks_raw_repl_and_raw_paste_to_the_fake_board(board):
    from mpremote.transport import TransportExecError
    from mpremote.transport_serial import SerialTransport

    t = SerialTransport(board.url, timeout=5)
    try:
        t.enter_raw_repl(soft_reset=True)
        assert t.eval("sys.platform if 'sys' in dir() else __import__('sys').platform") == "esp32"
        assert t.use_raw_paste  # the board said R\x01 and took the code in windows
        assert t.eval("len(bytes(5000))") == 5000
        t.exec("x = 6 * 7")
        assert t.eval("x") == 42  # one interpreter across commands, as on a board
        with pytest.raises(TransportExecError, match="ENOENT"):
            t.exec("open('nope')")
        t.use_raw_paste = False  # the plain raw REPL: code, Ctrl-D, "OK", output
        assert t.eval("x + 1") == 43
        t.enter_raw_repl(soft_reset=True)  # Ctrl-D soft reboot: "MPY: soft reboot", a fresh heap
        with pytest.raises(TransportExecError, match="NameError"):
            t.exec("x")
        t.exit_raw_repl()  # the friendly REPL: banner, prompt, echo, the value of an expression
        assert t.read_until(1, b">>> ", timeout=5).endswith(b"for more information.\r\n>>> ")
        t.serial.write(b"1+2\r")
        assert t.read_until(1, b">>> ", timeout=5) == b"1+2\r\n3\r\n>>> "
    finally:
        t.close()
    assert (board.flash_dir / "nope").exists() is False


def test_the_mpremote_command_line_works_with_the_fake_board_too(board):
    out = subprocess.run([str(MPREMOTE), "connect", board.url, "exec", "import sys; print(sys.implementation.version)",
                          "fs", "cp", str(Path(__file__)), ":copied.py"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "(1, 24, 1" in out.stdout
    assert (board.flash_dir / "copied.py").read_bytes() == Path(__file__).read_bytes()


# -- flashing ---------------------------------------------------------------------------------
def test_flash_copies_checks_on_the_board_and_a_second_run_copies_nothing(board, image):
    with SerialBoard(board.url) as b:
        first = flash(b, image)
        assert sorted(first.copied) == sorted(image.files) and not first.unchanged
        _assert_consistent(board.flash_dir, image)
        second = flash(b, image)
    assert second.copied == [] and second.bytes_copied == 0
    _assert_consistent(board.flash_dir, image)


def test_flash_replaces_an_older_image_and_removes_its_stale_files(board, image):
    with SerialBoard(board.url) as b:
        flash(b, _old_image(image))
        (board.flash_dir / "config.json").write_text('{"paired": true}')
        result = flash(b, image)
    assert result.removed == ["lib/safebox/firmware/retired.mpy"]
    assert set(result.copied) == {"lib/safebox/firmware/sender.mpy", "main.py"}
    _assert_consistent(board.flash_dir, image)
    assert (board.flash_dir / "config.json").read_text() == '{"paired": true}'  # pairing untouched


def _old_image(image: Image) -> Image:
    """The image a board had before: one module different, one module since retired."""
    return Image({**image.files, "lib/safebox/firmware/retired.mpy": b"M\x06\x00\x1f old",
                  **{p: d + b"\x00" for p, d in image.files.items() if p.endswith("sender.mpy")}})


@pytest.fixture(scope="module")
def flash_cost(tmp_path_factory, image) -> tuple[int, int]:
    """(bytes sent, commands run) to update a board from the old image to the new one."""
    with FakeBoardThread(tmp_path_factory.mktemp("measure")) as fake:
        with SerialBoard(fake.url) as b:
            flash(b, _old_image(image))
        sent, execs = fake.board.received, fake.board.execs
        with SerialBoard(fake.url) as b:
            flash(b, image)
        return fake.board.received - sent, fake.board.execs - execs


# Where the cable is pulled: half-way through the bytes (staging the new files), or just
# before a command, counted from the end. The last commands are the commit: remove the
# manifest and main.py (8), rename the staged modules (7), remove retired ones (6), rename
# main.py (5), write the manifest, a command per KB (4, 3), rename it (2), the final check (1).
CUTS = [("bytes", 0.5), ("exec", 8), ("exec", 7), ("exec", 6), ("exec", 5), ("exec", 3), ("exec", 1)]


@pytest.mark.parametrize(("unit", "where"), CUTS, ids=[f"{u}-{w}" for u, w in CUTS])
def test_unplugged_mid_flash_the_retry_finishes_and_nothing_is_half_done(tmp_path, image, flash_cost, unit, where):
    old = _old_image(image)
    sent, execs = flash_cost
    with FakeBoardThread(tmp_path / "flash") as fake:
        with SerialBoard(fake.url) as b:
            flash(b, old)
        if unit == "bytes":
            fake.unplug_after(int(sent * where))
        else:
            fake.unplug_at_exec(execs - where + 1)
        with pytest.raises(InstallerError) as cut:
            with SerialBoard(fake.url) as b:
                flash(b, image)
        assert cut.value.key == "board_gone"
        assert "run the same command again" in str(cut.value)
        files = _on_board(fake.flash_dir)
        if MANIFEST in files:  # a manifest is there only when all it lists is there, intact
            named = json.loads((fake.flash_dir / MANIFEST).read_text())["files"]
            assert named in (old.hashes, image.hashes)
            assert {p: files.get(p) for p in named} == named
        elif "main.py" in files:  # committing, main.py back: everything else is new already
            assert {p: files.get(p) for p in image.files} == image.hashes
        # plugged back in: the same command again
        with SerialBoard(fake.url) as b:
            flash(b, image)
        _assert_consistent(fake.flash_dir, image)


@pytest.mark.parametrize(("board_kwargs", "key", "words"), [
    ({"version": (1, 19, 1)}, "board_version_too_old", "MicroPython 1.19.1; safebox needs 1.23.0 or newer"),
    ({"platform": "rp2", "machine": "Raspberry Pi Pico W with RP2040"}, "board_wrong_platform", "for rp2"),
    ({"mpy": 5}, "board_mpy_mismatch", ".mpy format 5"),
])
def test_wrong_micropython_is_refused_before_anything_is_written(tmp_path, image, board_kwargs, key, words):
    with FakeBoardThread(tmp_path / "flash", **board_kwargs) as fake:
        with SerialBoard(fake.url) as b:
            with pytest.raises(InstallerError) as refused:
                flash(b, image)
    assert refused.value.key == key and words in str(refused.value)
    assert "Nothing on the board was changed" in str(refused.value) or key == "board_wrong_platform"
    assert _on_board(tmp_path / "flash") == {}


def test_a_board_with_too_little_space_is_refused_untouched(tmp_path, image):
    class SmallBoard(FolderBoard):
        def free_bytes(self) -> int:
            return 10_000

    board = SmallBoard(tmp_path / "flash", "24:0A:C4:00:00:09")
    with pytest.raises(InstallerError) as refused:
        flash(board, image)
    assert refused.value.key == "board_full_before"
    assert not (tmp_path / "flash").exists()


def test_no_board_plugged_in_says_what_to_do(monkeypatch, capsys, device_image):
    from serial.tools import list_ports
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    with pytest.raises(InstallerError) as none:
        find_port()
    assert none.value.key == "board_not_found"
    assert cli.main(["flash", "--image", str(device_image)]) == cli.EXIT_REFUSED
    assert "No board found: plug the device into this computer's USB port with a data cable" in capsys.readouterr().err
    assert cli.main(["--lang", "zh", "flash", "--image", str(device_image)]) == cli.EXIT_REFUSED
    assert "没有找到设备" in capsys.readouterr().err
    two = [types.SimpleNamespace(device=f"/dev/ttyUSB{n}", vid=0x10C4) for n in (0, 1)]
    monkeypatch.setattr(list_ports, "comports", lambda: two)
    assert cli.main(["flash", "--image", str(device_image)]) == cli.EXIT_REFUSED
    assert "Several boards found (/dev/ttyUSB0, /dev/ttyUSB1)" in capsys.readouterr().err


def test_a_port_where_nothing_answers_like_micropython(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        with pytest.raises(InstallerError) as silent:
            SerialBoard(f"socket://127.0.0.1:{port}", timeout_s=1)
        assert silent.value.key == "board_not_micropython"
        assert "RST" in str(silent.value)
    finally:
        listener.close()
        for conn, _ in accepted:
            conn.close()
    with pytest.raises(InstallerError) as closed:
        SerialBoard(f"socket://127.0.0.1:{port}", timeout_s=1)
    assert closed.value.key == "board_cannot_open"


def test_flash_command_line_shows_progress_and_the_result(board, device_image, capsys):
    assert cli.main(["flash", "--port", board.url, "--image", str(device_image)]) == 0
    out = capsys.readouterr()
    assert "100%" in out.err and "Done:" in out.out and "sha256 checked on the board" in out.out
    assert "safebox-install pair --port" in out.out  # not paired yet: what to do next
