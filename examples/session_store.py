"""Session storage on the cache's ``user_session`` type: 24 h TTL, renewed on each access.

    python examples/session_store.py                  # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/session_store.py

Sessions live at ``cache:tenant:{tenant_id}:user_session:{session_id}``, so logging a tenant's
users out is one pattern invalidation.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import anyio

from taskforge import CacheService, get_cache_service


class SessionStore:
    """User sessions in the tenant-aware cache (JSON data, sliding 24 h expiry)."""

    def __init__(self, cache: CacheService) -> None:
        self.cache = cache

    async def create(self, tenant_id: str, user_id: str, **data: Any) -> str:
        """Start a session; returns its id (unguessable, URL-safe)."""
        session_id = secrets.token_urlsafe(24)
        session = {"user_id": user_id, "created_at": time.time(), **data}
        await self.cache.set(f"user_session:{session_id}", session, tenant_id=tenant_id)
        return session_id

    async def load(self, tenant_id: str, session_id: str) -> dict[str, Any] | None:
        """The session, or None if it expired or never existed; an access renews its TTL."""
        session: dict[str, Any] | None = await self.cache.get(
            f"user_session:{session_id}", tenant_id=tenant_id
        )
        if session is not None:
            await self.cache.set(f"user_session:{session_id}", session, tenant_id=tenant_id)
        return session

    async def destroy(self, tenant_id: str, session_id: str) -> bool:
        """Log one session out."""
        return await self.cache.invalidate(f"user_session:{session_id}", tenant_id=tenant_id)

    async def destroy_tenant(self, tenant_id: str) -> int:
        """Log every user of a tenant out (SCAN + UNLINK, never KEYS)."""
        return await self.cache.invalidate_pattern("user_session:*", tenant_id=tenant_id)


async def main() -> None:
    os.environ.setdefault("REDIS_URL", "memory://sessions")
    store = SessionStore(await get_cache_service())

    sid = await store.create("tenant-1", "user-42", role="admin")
    other = await store.create("tenant-1", "user-43")
    print("loaded:", await store.load("tenant-1", sid))
    print("another tenant cannot read it:", await store.load("tenant-2", sid))
    ttl_s = await store.cache.ttl(f"user_session:{sid}", tenant_id="tenant-1")
    print(f"expires in ~{(ttl_s or 0) / 3600:.1f} h")
    print("logged out:", await store.destroy("tenant-1", sid), await store.load("tenant-1", sid))
    print("tenant logout removed", await store.destroy_tenant("tenant-1"), "session(s);", other)


if __name__ == "__main__":
    anyio.run(main)
