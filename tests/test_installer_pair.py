"""Pairing and unpairing over the serial path, against the hub's real registry and database.

One fresh key per pairing, on the device and the hub and nowhere else; a device of one home
only; and after every refusal or failure (wrong role, duplicate, unplugged, a hub that
cannot register, firmware that will not start) neither side is left half-paired.
"""

from __future__ import annotations

import asyncio
import json
import types
from pathlib import Path

import pytest

from safebox.firmware import config as fw_config
from safebox.hub import config as hub_config
from safebox.hub.devices import Devices, DevicesError
from safebox.hub.store import HubStore
from safebox.tools.installer import cli
from safebox.tools.installer.fakeboard_thread import FakeBoardThread
from safebox.tools.installer.flash import MANIFEST, Image
from safebox.tools.sim import hub_toml

MAC = "24:0A:C4:00:00:01"
DEVICE_ID = "240ac4000001"


@pytest.fixture(autouse=True)
def _no_reconnect_pause(monkeypatch):
    """pyserial's socket:// close sleeps 0.3 s for servers slow to accept again; the fake board is not."""
    from serial.urlhandler import protocol_socket
    monkeypatch.setattr(protocol_socket, "time", types.SimpleNamespace(sleep=lambda s: None))


@pytest.fixture(scope="module")
def image(device_image: Path) -> Image:
    return Image.from_dir(device_image)


def _hub(folder: Path, home: str = "home-0001", hub: str = "hub-test-0001") -> Path:
    return hub_toml.write(folder / "hub.toml", hub_id=hub, home_id=home, platform_url="https://platform.example.org")


def _flashed(folder: Path, image: Image) -> Path:
    """A board's flash as `safebox-install flash` leaves it."""
    for path, data in image.files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    (folder / MANIFEST).write_bytes(image.manifest())
    return folder


@pytest.fixture
def board(tmp_path, image):
    with FakeBoardThread(_flashed(tmp_path / "flash", image), mac=MAC) as fake:
        yield fake


@pytest.fixture
def hub(tmp_path) -> Path:
    return _hub(tmp_path / "hub")


def _pair(board, hub: Path, *extra: str) -> int:
    return cli.main(["pair", "--port", board.url, "--hub-config", str(hub), "--role", "pendant",
                     "--room", "bedroom", *extra])


def _registry(hub: Path) -> dict[str, str]:
    devices = Devices.load(hub_config.load(hub).devices_path)
    return {d.address: d.key.hex() for d in devices}


def _device_config(board) -> dict | None:
    path = board.flash_dir / "config.json"
    return json.loads(path.read_text()) if path.exists() else None


def _snapshot(board, hub: Path) -> tuple[bytes | None, bytes | None]:
    cfg = board.flash_dir / "config.json"
    reg = hub_config.load(hub).devices_path
    return (cfg.read_bytes() if cfg.exists() else None, reg.read_bytes() if reg.exists() else None)


def test_pairing_puts_one_fresh_key_on_the_device_and_the_hub_and_never_shows_it(board, hub, image, capsys):
    assert _pair(board, hub) == 0
    out = capsys.readouterr()
    cfg = _device_config(board)
    key = cfg["key"]
    assert _registry(hub) == {MAC: key}
    assert key not in out.out + out.err and key.upper() not in out.out + out.err
    assert (cfg["role"], cfg["home_id"], cfg["hub_id"]) == ("pendant", "home-0001", "hub-test-0001")
    assert fw_config.parse(cfg)["key"] == bytes.fromhex(key)  # the firmware's own parser accepts it
    assert "Paired: pendant 24:0A:C4:00:00:01, room: bedroom" in out.out
    assert not list(board.flash_dir.glob("*.new"))
    # another pairing elsewhere makes another key: never a default one
    with FakeBoardThread(_flashed(board.flash_dir.parent / "other", image), mac="24:0A:C4:00:00:02") as other:
        assert _pair(other, hub) == 0
    keys = _registry(hub)
    assert len(set(keys.values())) == 2


def test_pairing_twice_is_refused_and_changes_nothing(board, hub, capsys):
    assert _pair(board, hub) == 0
    before = _snapshot(board, hub)
    assert _pair(board, hub) == cli.EXIT_REFUSED
    assert "already paired in this home (pendant, room: bedroom)" in capsys.readouterr().err
    assert _snapshot(board, hub) == before


def test_re_pairing_replaces_the_key_everywhere_and_the_hub_forgets_the_old_counter(board, hub, capsys):
    assert _pair(board, hub) == 0
    old_key = _device_config(board)["key"]
    cfg = hub_config.load(hub)
    with HubStore.open(cfg.db_path) as store:
        store.accept(DEVICE_ID, 5000, heard_at=1.0, battery=80, rssi=-60)
    assert cli.main(["pair", "--port", board.url, "--hub-config", str(hub), "--role", "pendant",
                     "--room", "living room", "--replace"]) == 0
    assert "The old key is gone" in capsys.readouterr().out
    new_key = _device_config(board)["key"]
    assert new_key != old_key and _registry(hub) == {MAC: new_key}
    assert Devices.load(cfg.devices_path).get(MAC).room == "living room"
    with HubStore.open(cfg.db_path) as store:
        assert store.last_counter(DEVICE_ID) is None and store.seen(DEVICE_ID) is None


@pytest.mark.parametrize(("args", "words"), [
    (["--role", "kitchen"], 'There is no device role "kitchen"'),
    (["--role", "pendant", "--room", "bed\nroom"], 'The room name "bed\nroom" cannot be used'),
    (["--role", "pendant", "--board", "esp8266"], 'There is no board "esp8266"'),
    (["--role", "pendant", "--pin", "emergency"], "--pin takes NAME=GPIO"),
    (["--role", "pendant", "--pin", "teleporter=5"], "pins.teleporter: unknown pin name"),
    (["--role", "pendant", "--pin", "emergency=14"], "pins.emergency: GPIO 14"),
])
def test_wrong_role_and_other_bad_input_touch_nothing(board, hub, capsys, args, words):
    rc = cli.main(["pair", "--port", board.url, "--hub-config", str(hub), *args])
    assert rc == cli.EXIT_REFUSED
    assert words in capsys.readouterr().err
    assert _snapshot(board, hub) == (None, None)
    assert board.board.connections == 0  # refused before the board was even opened


def test_a_board_without_complete_firmware_is_refused(tmp_path, hub, image, capsys):
    with FakeBoardThread(tmp_path / "blank", mac=MAC) as blank:
        assert _pair(blank, hub) == cli.EXIT_REFUSED
        assert f"has no complete firmware yet. First run: safebox-install flash --port {blank.url}" \
            in capsys.readouterr().err
    with FakeBoardThread(_flashed(tmp_path / "damaged", image), mac=MAC) as damaged:
        (damaged.flash_dir / "lib/safebox/firmware/sender.mpy").write_bytes(b"M\x06 truncated")
        assert _pair(damaged, hub) == cli.EXIT_REFUSED
        assert "is damaged (lib/safebox/firmware/sender.mpy)" in capsys.readouterr().err
    assert _registry(hub) == {}


def test_a_device_belongs_to_one_home_only(board, tmp_path, capsys):
    home_a, home_b = _hub(tmp_path / "a", "home-a", "hub-a"), _hub(tmp_path / "b", "home-b", "hub-b")
    assert _pair(board, home_a) == 0
    paired_a = _snapshot(board, home_a)
    assert _pair(board, home_b, "--replace") == cli.EXIT_REFUSED
    assert "belongs to another home (home-a, hub hub-a)" in capsys.readouterr().err
    assert _registry(home_b) == {} and _snapshot(board, home_a) == paired_a
    # home B cannot unpair it either, unless told that home A is gone
    assert cli.main(["unpair", "--port", board.url, "--hub-config", str(home_b)]) == cli.EXIT_REFUSED
    assert "add --force" in capsys.readouterr().err
    assert cli.main(["unpair", "--port", board.url, "--hub-config", str(home_b), "--force"]) == 0
    assert _device_config(board) is None
    assert _pair(board, home_b) == 0
    assert _device_config(board)["home_id"] == "home-b"


# The board commands pairing sends, counted from the first: read the image manifest (1),
# hash its files (2), read the MAC (3), read config.json (4), write config.json.new (5),
# hash it (6), rename it (7), reset (8).
@pytest.mark.parametrize("cut_before", [3, 5, 6, 7, 8])
def test_unplugged_while_pairing_leaves_neither_side_half_paired(board, hub, capsys, cut_before):
    board.unplug_at_exec(cut_before)
    rc = _pair(board, hub)
    registry, cfg = _registry(hub), _device_config(board)
    if rc == 0:  # unplugged as it was told to restart: the pairing itself was complete
        assert cut_before == 8 and registry == {MAC: cfg["key"]}
    else:
        assert "went away" in capsys.readouterr().err
        assert registry == {} and cfg is None
    # plugged back in: the same command again ends paired (or says it already is)
    rc = _pair(board, hub)
    assert rc == 0 or cut_before == 8
    assert _registry(hub) == {MAC: _device_config(board)["key"]}


def test_a_hub_that_cannot_register_leaves_the_device_as_it_was(board, hub, monkeypatch, capsys):
    assert _pair(board, hub) == 0
    before = _snapshot(board, hub)

    def broken_add(self, device):
        raise DevicesError("devices.json: disk full")

    monkeypatch.setattr(Devices, "add", broken_add)
    assert _pair(board, hub, "--replace") == cli.EXIT_REFUSED
    assert "Registering with the hub failed: devices.json: disk full" in capsys.readouterr().err
    monkeypatch.undo()
    assert _snapshot(board, hub) == before  # the old key on both sides, byte for byte


def _firmware(role_ok: str = "pendant"):
    """What a board runs at boot: the image's answer to its config.json, as firmware/main.py prints it."""

    class Ran:
        def __init__(self, running: bool) -> None:
            self.running = running

        async def stop(self) -> None:
            self.running = False

    async def boot(board, out):
        await asyncio.sleep(0.05)
        out(b"boot safebox 0.2.0 reset_cause 2 wake 0\n")
        try:
            role = json.loads((board.flash_dir / "config.json").read_text())["role"]
        except OSError:
            out(b"self-test: FAIL config: config: config.json is missing (the device is not paired)\n")
            return Ran(False)
        if role != role_ok:
            out(b"self-test: FAIL config: role: %s is not built yet\n" % role.encode())
            return Ran(False)
        out(b"checks ok: config, radio\nready %s next counter 1 pending 0\n" % role.encode())
        return Ran(True)

    return boot


def test_firmware_that_will_not_start_with_the_config_undoes_the_pairing(tmp_path, hub, image, capsys):
    with FakeBoardThread(_flashed(tmp_path / "flash", image), mac=MAC, on_boot=_firmware("pendant")) as fake:
        rc = cli.main(["pair", "--port", fake.url, "--hub-config", str(hub), "--role", "front_door",
                       "--room", "hall"])
        assert rc == cli.EXIT_REFUSED
        err = capsys.readouterr().err
        assert "did not start with this configuration; it said: self-test: FAIL config: role: front_door " \
               "is not built yet. The pairing was undone" in err
        assert _registry(hub) == {} and _device_config(fake) is None
        assert _pair(fake, hub) == 0
        assert "The device started and reports ready." in capsys.readouterr().out
        assert _registry(hub) == {MAC: _device_config(fake)["key"]}


def test_unpair_removes_the_device_from_the_hub_and_the_board(board, hub, capsys):
    assert _pair(board, hub) == 0
    with HubStore.open(hub_config.load(hub).db_path) as store:
        store.accept(DEVICE_ID, 7, heard_at=1.0)
    assert cli.main(["unpair", "--port", board.url, "--hub-config", str(hub)]) == 0
    assert _registry(hub) == {} and _device_config(board) is None
    with HubStore.open(hub_config.load(hub).db_path) as store:
        assert store.last_counter(DEVICE_ID) is None
    assert "wiped" in capsys.readouterr().out


def test_unpair_a_lost_device_by_its_address(board, hub, capsys):
    assert _pair(board, hub) == 0
    assert cli.main(["unpair", "--device", MAC.lower(), "--hub-config", str(hub)]) == 0
    assert _registry(hub) == {}
    assert cli.main(["unpair", "--device", MAC, "--hub-config", str(hub)]) == cli.EXIT_REFUSED
    assert "is not paired in this home" in capsys.readouterr().err
    assert cli.main(["unpair", "--hub-config", str(hub)]) == cli.EXIT_REFUSED  # neither --port nor --device
