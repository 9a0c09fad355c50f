"""The drivers bound to the queue protocol: a broker runs :class:`~taskforge.protocol.ops.Ops`
(its ``ops``) with the protocol's scripts, over a blocking or an asyncio client."""

from __future__ import annotations

from taskforge.driver.async_driver import AsyncDriver
from taskforge.driver.connection import AsyncRedis, SyncRedis
from taskforge.driver.sync_driver import SyncDriver
from taskforge.protocol.ops import Ops
from taskforge.protocol.scripts import SCRIPTS
from taskforge.settings import Settings


class SyncBroker(SyncDriver):
    """Runs :class:`Ops` over a blocking redis-py client (producer API, CLI)."""

    def __init__(self, settings: Settings, client: SyncRedis | None = None):
        super().__init__(settings, SCRIPTS, client)
        self.ops = Ops(settings)


class AsyncBroker(AsyncDriver):
    """Runs :class:`Ops` over an asyncio redis-py client (worker, async producer API)."""

    def __init__(self, settings: Settings, client: AsyncRedis | None = None):
        super().__init__(settings, SCRIPTS, client)
        self.ops = Ops(settings)


__all__ = ["AsyncBroker", "SyncBroker"]
