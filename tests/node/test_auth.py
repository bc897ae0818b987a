"""The verified-secret memo of ``node.auth.Authenticator``: a secret is derived (PBKDF2) once per
stored secret, not once per request, even when requests miss the memo together or another
handle's write bumps the admin handle's version bucket; a changed secret is checked again."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from node.coherence import Versions
from node.config import Config
from node.service import Service
from node.store.sqlite import SQLiteStore
from protocol.codes import OpFlag, ResponseCode
from protocol.messages import CreateRequest, Credential
from protocol.records import HandleValue

PREFIX = "88.300.1"
SECRET = "s3cret"


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts PBKDF2 derivations (the stdlib's, which ``node.auth`` calls)."""
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counted(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counted)
    return calls


def _create(n: int, secret: str = SECRET) -> CreateRequest:
    return CreateRequest(
        handle=f"{PREFIX}/P-{n}",
        values=(HandleValue(1, "URL", b"https://example.com/"),),
        credential=Credential(f"{PREFIX}/ADMIN", 300, secret),
    )


async def _with_service(data_dir: Path, versions: Versions, run: Any) -> Any:
    store = SQLiteStore(data_dir)
    await store.open()
    try:
        service = Service(Config(data_dir=str(data_dir)), store, versions=versions)
        await service.start()
        await service.home_prefix(PREFIX, SECRET)
        return await run(service)
    finally:
        await store.close()


def test_concurrent_writes_derive_the_secret_once(tmp_path: Path, derivations: list[int]) -> None:
    async def run(service: Service) -> list[int]:
        derivations.clear()  # homing hashed the secret
        answers = await asyncio.gather(*(service.handle(_create(n)) for n in range(32)))
        return [a.code for a in answers]

    codes = asyncio.run(_with_service(tmp_path, Versions(), run))
    assert codes == [ResponseCode.SUCCESS] * 32
    assert len(derivations) == 1


def test_other_handles_in_the_admin_bucket_do_not_cost_a_derivation(
    tmp_path: Path, derivations: list[int]
) -> None:
    async def run(service: Service) -> list[int]:
        derivations.clear()
        return [(await service.handle(_create(n))).code for n in range(10)]

    # one bucket: every write bumps the admin handle's version too
    codes = asyncio.run(_with_service(tmp_path, Versions(buckets=1), run))
    assert codes == [ResponseCode.SUCCESS] * 10
    assert len(derivations) == 1


def test_a_changed_secret_is_checked_again(tmp_path: Path, derivations: list[int]) -> None:
    async def run(service: Service) -> tuple[int, int, int]:
        first = (await service.handle(_create(1))).code
        admin = await service.store.get(f"{PREFIX}/ADMIN")
        assert admin is not None
        rotated = tuple(
            HandleValue(v.index, v.type, b"n3w", permissions=v.permissions) if v.index == 300 else v
            for v in admin.values
        )
        request = CreateRequest(
            handle=f"{PREFIX}/ADMIN",
            values=rotated,
            flags=OpFlag.OVERWRITE,
            credential=Credential(f"{PREFIX}/ADMIN", 300, SECRET),
        )
        assert (await service.handle(request)).code == ResponseCode.SUCCESS
        old = (await service.handle(_create(2))).code
        new = (await service.handle(_create(3, "n3w"))).code
        return first, old, new

    first, old, new = asyncio.run(_with_service(tmp_path, Versions(), run))
    assert first == ResponseCode.SUCCESS
    assert old == ResponseCode.AUTHENTICATION_FAILED
    assert new == ResponseCode.SUCCESS
