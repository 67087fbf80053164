"""Hub enrolment: a one-time code from the platform, the hub's own key, proof of possession.

The hub side is `safebox-install enrol` (sync, urllib, the hub's verified TLS); the platform
side is the reference receiver's `POST /v1/enrol` and `safebox-receiver enrol-code`, served
here in-process over real TLS from a real SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safebox.hub import config as hub_config
from safebox.hub import keys
from safebox.protocol import events
from safebox.protocol.signing import public_key_to_text, signed_headers
from safebox.tools.installer import cli
from safebox.tools.installer.enrol import ENROL_PATH, idempotency_key
from safebox.tools.receiver import cli as receiver_cli
from safebox.tools.receiver.app import make_app
from safebox.tools.receiver.enrol import EnrolCodes, normalise
from safebox.tools.receiver.store import Store
from safebox.tools.sim import hub_toml
from safebox.tools.tlsca import make_ca

HUB = "hub-enrol-0001"


@dataclass
class Platform:
    url: str
    db: Path
    store: Store
    ca: Path


@pytest.fixture
async def platform(tmp_path):
    tls = make_ca(tmp_path / "tls")
    store = Store(tmp_path / "platform.db")
    runner = web.AppRunner(make_app(store))
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server_cert_chain, tls.server_key)
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    yield Platform(f"https://127.0.0.1:{runner.addresses[0][1]}", tmp_path / "platform.db", store, tls.ca_cert)
    await runner.cleanup()
    store.close()


def _hub(tmp_path: Path, platform: Platform, *, hub_id: str = HUB, ca: bool = True) -> Path:
    return hub_toml.write(tmp_path / f"{hub_id}.toml", hub_id=hub_id, home_id="home-0001", state_dir=f"state-{hub_id}",
                          platform_url=platform.url, ca_file=platform.ca if ca else None)


def _issue(platform: Platform, hub_id: str = HUB, *extra: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert receiver_cli.main(["enrol-code", "--db", str(platform.db), "--hub-id", hub_id, *extra]) == 0
    return out.getvalue().strip()


async def _enrol(config: Path, code: str, *, lang: str = "en") -> int:
    code_file = config.with_suffix(".code")
    code_file.write_text(code + "\n")
    return await asyncio.to_thread(cli.main, ["--lang", lang, "enrol", "--hub-config", str(config),
                                              "--code-file", str(code_file)])


def _codes(platform: Platform) -> list[tuple]:
    return platform.store._db.execute("SELECT hub_id, used_at FROM enrol_codes").fetchall()


async def test_the_hub_enrols_with_a_one_time_code_and_its_events_are_then_accepted(platform, tmp_path, capsys):
    config = _hub(tmp_path, platform)
    code = _issue(platform)
    assert normalise(code) is not None and len(code) == 14  # XXXX-XXXX-XXXX
    assert platform.store.hub_key(HUB) is None
    assert await _enrol(config, code) == 0
    assert "Enrolled: the platform now knows hub hub-enrol-0001's public key." in capsys.readouterr().out
    cfg = hub_config.load(config)
    hub_key = keys.load_or_create(cfg.key_path)  # made on the hub by enrol, mode 0600
    assert oct(cfg.key_path.stat().st_mode & 0o777) == "0o600"
    assert public_key_to_text(platform.store.hub_key(HUB)) == keys.public_key_text(hub_key)
    # the uplink's signed event is now accepted from this hub
    body = events.encode(events.make(event_id=events.hub_event_id(HUB, 1), type=events.HUB_HEARTBEAT,
                                     hub_id=HUB, home_id="home-0001", occurred_at=time.time()))
    url = platform.url + "/v1/events"
    headers = signed_headers(hub_key, HUB, url, body, events.hub_event_id(HUB, 1))
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers,
                                ssl=ssl.create_default_context(cafile=str(platform.ca))) as resp:
            assert resp.status == 201
    assert _codes(platform)[0][1] is not None  # spent


async def test_a_code_works_once(platform, tmp_path, capsys):
    config = _hub(tmp_path, platform)
    code = _issue(platform)
    assert await _enrol(config, code) == 0
    first_key = public_key_to_text(platform.store.hub_key(HUB))
    assert await _enrol(config, code.lower().replace("-", "")) == 0  # the answer was lost: same key, same code
    assert "already enrolled with this code" in capsys.readouterr().out
    hub_config.load(config).key_path.unlink()  # a different key (a hub remade) cannot use it again
    assert await _enrol(config, code) == cli.EXIT_REFUSED
    assert "This enrolment code was already used" in capsys.readouterr().err
    assert public_key_to_text(platform.store.hub_key(HUB)) == first_key
    # a new code replaces the key (a hub whose card was replaced)
    assert await _enrol(config, _issue(platform)) == 0
    assert "replaced the public key it had for this hub" in capsys.readouterr().out
    assert public_key_to_text(platform.store.hub_key(HUB)) != first_key


async def test_an_expired_code_is_refused_and_nothing_is_enrolled(platform, tmp_path, capsys):
    config = _hub(tmp_path, platform)
    issued = EnrolCodes(platform.store).issue(HUB, 60, now=time.time() - 3600)
    assert await _enrol(config, issued.code) == cli.EXIT_REFUSED
    assert "This enrolment code has expired" in capsys.readouterr().err
    assert await _enrol(config, issued.code, lang="zh") == cli.EXIT_REFUSED
    assert "这个登记码已过期" in capsys.readouterr().err
    assert platform.store.hub_key(HUB) is None
    assert _codes(platform) == [(HUB, None)]  # not spent either


@pytest.mark.parametrize(("code", "words"), [
    ("ABCD-EFGH-JKMN", "does not know this enrolment code"),
    ("not a code", "does not know this enrolment code"),
])
async def test_unknown_codes_are_refused(platform, tmp_path, capsys, code, words):
    _issue(platform)
    assert await _enrol(_hub(tmp_path, platform), code) == cli.EXIT_REFUSED
    assert words in capsys.readouterr().err
    assert platform.store.hub_key(HUB) is None


async def test_a_code_for_another_hub_is_refused(platform, tmp_path, capsys):
    code = _issue(platform, "hub-other-0002")
    assert await _enrol(_hub(tmp_path, platform), code) == cli.EXIT_REFUSED
    assert "is not for this hub: this code was issued for hub 'hub-other-0002'" in capsys.readouterr().err
    assert platform.store.hub_key(HUB) is None and platform.store.hub_key("hub-other-0002") is None


async def test_the_request_must_prove_it_holds_the_key_and_cannot_be_replayed(platform):
    code = _issue(platform)
    claimed, signer = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    url = platform.url + ENROL_PATH
    body = json.dumps({"hub_id": HUB, "home_id": "home-0001", "code": code,
                       "public_key": public_key_to_text(claimed.public_key())}).encode()
    tls = ssl.create_default_context(cafile=str(platform.ca))
    async with aiohttp.ClientSession() as session:
        forged = signed_headers(signer, HUB, url, body, idempotency_key(HUB))
        async with session.post(url, data=body, headers=forged, ssl=tls) as resp:
            answer = await resp.json()
            assert (resp.status, answer["status"], answer["error"]) == (401, "rejected", "bad_signature")
        genuine = signed_headers(claimed, HUB, url, body, idempotency_key(HUB))
        async with session.post(url, data=body, headers=genuine, ssl=tls) as resp:
            assert resp.status == 201 and (await resp.json())["status"] == "enrolled"
        async with session.post(url, data=body, headers=genuine, ssl=tls) as resp:  # the same bytes again
            answer = await resp.json()
            assert (resp.status, answer["error"]) == (401, "bad_signature") and "nonce" in answer["reason"]
        tampered = body.replace(b"home-0001", b"home-0666")
        async with session.post(url, data=tampered, headers=signed_headers(claimed, HUB, url, body,
                                                                            idempotency_key(HUB)), ssl=tls) as resp:
            assert resp.status == 401 and "content-digest" in (await resp.json())["reason"]


async def test_tls_is_verified_for_enrolment_too(platform, tmp_path, capsys):
    config = _hub(tmp_path, platform, ca=False)  # the system store does not know the test CA
    assert await _enrol(config, _issue(platform)) == cli.EXIT_REFUSED
    assert "did not verify" in capsys.readouterr().err and platform.store.hub_key(HUB) is None
    cfg = _hub(tmp_path, platform, hub_id="hub-nowhere-0003")
    cfg.write_text(cfg.read_text().replace(platform.url, "https://127.0.0.1:9"))
    assert await _enrol(cfg, "ABCD-EFGH-JKMN") == cli.EXIT_REFUSED
    assert "Cannot reach the platform at https://127.0.0.1:9/v1/enrol" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "words"), [
    (["--hub-id", "Hub_Not_Valid"], "hub id: lower-case letters"),
    (["--hub-id", HUB, "--ttl", "10"], "ttl: 60..604800 seconds"),
])
def test_enrol_code_command_refuses_bad_input(tmp_path, capsys, args, words):
    assert receiver_cli.main(["enrol-code", "--db", str(tmp_path / "p.db"), *args]) == 2
    assert words in capsys.readouterr().err


async def test_the_code_is_never_taken_from_the_command_line(platform, tmp_path, capsys, monkeypatch):
    """On the command line a code stays in shell history and shows in `ps`: refused, saying why;
    a pipe (or a file, or the unechoed prompt) is the way in."""
    config = _hub(tmp_path, platform)
    code = _issue(platform)
    assert "on stdout" in capsys.readouterr().err  # enrol-code says what it is for, not the code again
    argv = ["enrol", "--hub-config", str(config), "--code", code]
    assert await asyncio.to_thread(cli.main, argv) == cli.EXIT_REFUSED
    assert "shell's history" in capsys.readouterr().err
    assert platform.store.hub_key(HUB) is None and _codes(platform) == [(HUB, None)]
    monkeypatch.setattr("sys.stdin", io.StringIO(code + "\n"))  # safebox-receiver enrol-code ... | ssh hub ...
    assert await asyncio.to_thread(cli.main, ["enrol", "--hub-config", str(config)]) == 0
    assert platform.store.hub_key(HUB) is not None


def test_enrol_code_shows_the_code_once_on_stdout_only(platform, capsys):
    code = _issue(platform)
    err = capsys.readouterr().err
    assert normalise(code) is not None and code not in err and normalise(code) not in err.replace("-", "")


async def test_guessing_codes_is_refused_after_ten_failures_even_with_the_right_code(platform, tmp_path, capsys):
    from safebox.tools.attacks import wire
    config = _hub(tmp_path, platform)
    code = _issue(platform)
    for n in range(10):
        assert await _enrol(config, f"ABCD-EFGH-{n:04d}") == cli.EXIT_REFUSED
    capsys.readouterr()
    assert await _enrol(config, code) == cli.EXIT_REFUSED  # the right code, from the guessing address
    assert "10 failed enrolments from this address" in capsys.readouterr().err
    assert platform.store.hub_key(HUB) is None and _codes(platform) == [(HUB, None)]  # nothing spent, nothing stored
    # another address is not held by it
    key = Ed25519PrivateKey.generate()
    doc = json.dumps({"hub_id": HUB, "home_id": "home-0001", "code": code,
                      "public_key": public_key_to_text(key.public_key())}).encode()
    url = platform.url + ENROL_PATH
    status, answer = await wire.send_split(url, ssl.create_default_context(cafile=str(platform.ca)),
                                           signed_headers(key, HUB, url, doc, idempotency_key(HUB)), doc,
                                           source="127.0.0.9")
    assert (status, answer["status"]) == (201, "enrolled")
