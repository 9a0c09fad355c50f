"""The process-wide cache service: ``get_cache_service()``, ``configure_cache()``."""

from __future__ import annotations

import threading
from typing import Any

from taskforge.cache.aio import CacheService
from taskforge.cache.sync import SyncCacheService
from taskforge.settings import Settings

__all__ = [
    "configure_cache",
    "default_cache_service",
    "get_cache_service",
    "get_sync_cache_service",
]

_default_lock = threading.Lock()
_default: CacheService | None = None


def configure_cache(service: CacheService | Settings | None = None, **options: Any) -> CacheService:
    """Replace the service :func:`get_cache_service` returns (``None``: from the environment)."""
    global _default
    if not isinstance(service, CacheService):
        service = CacheService(service, **options)
    with _default_lock:
        _default = service
    return service


def default_cache_service() -> CacheService:
    """The process-wide cache service, built from ``Settings.from_env()`` on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = CacheService()
        return _default


async def get_cache_service() -> CacheService:
    """The guide's ``cache = await get_cache_service()``: the process-wide service."""
    return default_cache_service()


def get_sync_cache_service() -> SyncCacheService:
    """The blocking twin of the process-wide service."""
    return default_cache_service().sync
