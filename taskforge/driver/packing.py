"""Commands packed in C: hiredis' ``pack_command`` for the asyncio client's connections.

redis-py's blocking connections pack with hiredis when it is installed; its asyncio connections
always pack in Python, one ``Encoder.encode`` and a few joins per argument. A worker sends every
outcome and fetch as one script call of ~8 arguments per job, so that packer was a sixth of a
drained job's worker CPU. :func:`packing_in_c` gives a pool's connection class hiredis' packer.

The bytes are the same either way (redis-py's sync client relies on it): hiredis writes numbers
as ``repr`` does and strings as strict UTF-8. What hiredis refuses (a lone surrogate, ``None``,
a ``bool``) and a first argument with a space in it (``"SCRIPT LOAD"``, which redis-py splits)
go to redis-py's own packer, which raises or splits as it always did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio
from redis.utils import HIREDIS_AVAILABLE

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None = None
if HIREDIS_AVAILABLE:  # as redis-py decides whether its sync connections pack with hiredis
    from hiredis import pack_command as _hiredis_pack


def in_c(command: tuple[Any, ...]) -> list[bytes] | None:
    """``command`` packed by hiredis in one C call; None when hiredis is absent or declines it
    (redis-py's packer then packs it, raises, or splits a first argument with a space)."""
    if _hiredis_pack is None:
        return None
    first = command[0]
    if b" " in first if isinstance(first, bytes) else " " in str(first):
        return None
    try:
        return [_hiredis_pack(command)]
    except (TypeError, UnicodeEncodeError):
        return None


def pack(conn: Any, command: tuple[Any, ...]) -> list[bytes]:
    """``command`` packed for ``conn``: by :func:`in_c` when it can, else by ``conn``."""
    packed = in_c(command)
    if packed is None:
        packed = conn.pack_command(*command)
    return packed


#: One subclass per connection class (the pools of a process share it).
_C_PACKED: dict[type[Any], type[Any]] = {}


def _c_packed(cls: type[Any]) -> type[Any]:
    if cls in _C_PACKED:
        return _C_PACKED[cls]

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        packed = in_c(args)
        return cls.pack_command(self, *args) if packed is None else packed

    made = type(cls.__name__, (cls,), {"pack_command": pack_command, "__module__": __name__})
    _C_PACKED[cls] = made
    return made


def packing_in_c(client: redis.asyncio.Redis) -> None:
    """Make the connections ``client``'s pool opens from now on pack commands with hiredis
    (no-op without hiredis, or when the pool encodes strings other than as UTF-8: a string
    hiredis takes is strict UTF-8, which every error mode of that codec encodes alike)."""
    pool = client.connection_pool
    encoding = str(pool.connection_kwargs.get("encoding", "utf-8")).lower().replace("-", "")
    if _hiredis_pack is None or encoding != "utf8":
        return
    cls = pool.connection_class
    if isinstance(cls, type) and issubclass(cls, redis.asyncio.connection.AbstractConnection):
        pool.connection_class = _c_packed(cls)


__all__ = ["in_c", "pack", "packing_in_c"]
