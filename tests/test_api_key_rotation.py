"""Rotating the REST API's key with an overlap: PAYBOT_API_KEY may hold several keys
(comma-separated, the current one first), each accepted, so clients move over with no moment
where they are refused; check-config names a key too short, by its place, never its value."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import create_app
from bot.config.settings import Settings
from bot.providers import Providers
from tests.seed import add_account
from tests.test_check_config import PRODUCTION, paybot, states  # noqa: F401 (paybot: a fixture)

OLD = "old-Hs8dKq2LmZp4Xv7Nc1Rt6Yb3Wf9Ge5Ja0"
NEW = "new-Tq3Wz8Lk1Mn6Bv4Cx9Pd2Rf7Gh5Js0Ya"


async def account_status(client: Any, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    response = await client.get("/api/v1/accounts/ACC-1001", headers=headers)
    return response.status


@pytest.fixture
def deploy(settings: Settings, providers: Providers, clock: Any, aiohttp_client: Any):  # type: ignore[no-untyped-def]
    """The web app as deployed with this PAYBOT_API_KEY (a restart after each change)."""

    async def start(api_key: str) -> Any:
        app = create_app(settings.replace(api_key=api_key), providers, clock)
        return await aiohttp_client(app)

    return start


async def test_a_rotation_never_refuses_a_client_moving_over_in_the_overlap(app, client, deploy):
    await add_account(app)
    before = await deploy(OLD)
    assert [await account_status(before, key) for key in (OLD, NEW)] == [200, 401]

    during = await deploy(f"{NEW}, {OLD}")  # the new key first, the old one kept meanwhile
    assert [await account_status(during, key) for key in (OLD, NEW)] == [200, 200]

    after = await deploy(NEW)  # every client moved: the old key goes
    assert [await account_status(after, key) for key in (OLD, NEW)] == [401, 200]


async def test_only_a_whole_key_opens_the_api(app, client, deploy):
    await add_account(app)
    api = await deploy(f"{NEW},{OLD},")
    refused = [f"{NEW},{OLD}", f"{NEW}, {OLD}", NEW[:-1], NEW + OLD, "", ",", None,
               NEW.upper()]
    assert [await account_status(api, key) for key in refused] == [401] * len(refused)
    response = await api.get("/api/v1/accounts/ACC-1001",
                             headers={"Authorization": f"Bearer {OLD}"})
    assert response.status == 200
    assert (await response.json())["account_id"] == "ACC-1001"


async def test_commas_alone_leave_the_api_disabled(app, deploy):
    client = await deploy(" , ,")
    response = await client.get("/api/v1/accounts/ACC-1001",
                                headers={"Authorization": "Bearer ,"})
    assert response.status == 503
    assert (await response.json())["error"] == "the REST API is disabled: set PAYBOT_API_KEY"


def test_check_config_names_a_short_key_by_its_place_and_production_refuses_it(paybot):  # noqa: F811
    code, out, _ = paybot({**PRODUCTION, "PAYBOT_API_KEY": f"{NEW},short-key"}, "check-config")
    assert code == 1
    assert ("  invalid  PAYBOT_API_KEY: key 2 of 2 is 9 bytes long; at least 32 are needed"
            in out.splitlines())
    assert "short-key" not in out and NEW not in out

    code, out, _ = paybot({**PRODUCTION, "PAYBOT_API_KEY": f"{NEW},{OLD}"}, "check-config")
    assert code == 0
    assert states(out)["PAYBOT_API_KEY"] == "ok"
    assert ("  ok       PAYBOT_API_KEY: 2 keys, each at least 32 bytes: the first is the current "
            "one; remove the others once every client uses it") in out.splitlines()
    assert OLD not in out and NEW not in out

    code, out, _ = paybot({**PRODUCTION, "PAYBOT_API_KEY": " , "}, "check-config")
    assert code == 1
    assert "  invalid  PAYBOT_API_KEY: no key in it, only commas or spaces" in out.splitlines()
