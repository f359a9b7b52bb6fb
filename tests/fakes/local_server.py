"""What every local fake of an outside API shares: an aiohttp server on a free loopback port."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

from aiohttp import web


class LocalServer(ABC):
    """Mixed into a fake (a dataclass with `host`, `port` and `_runner` fields) that builds its
    routes in `make_app()`."""

    host: str
    port: int
    _runner: web.AppRunner | None

    @abstractmethod
    def make_app(self) -> web.Application: ...

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
