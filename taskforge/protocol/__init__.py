"""The queue protocol: keys, the Lua scripts, the job-lifecycle operations and the admin reads,
over the Redis layer (:mod:`taskforge.driver`).

* :mod:`~taskforge.protocol.keys`: every key and channel name.
* :mod:`~taskforge.protocol.scripts`: the Lua scripts (``lua/``) loaded with their prelude.
* :mod:`~taskforge.protocol.records`: what the operations take and answer.
* :mod:`~taskforge.protocol.ops`: :class:`~taskforge.protocol.ops.Ops`, gathering
  :mod:`~taskforge.protocol.lifecycle`, :mod:`~taskforge.protocol.feature_ops` and
  :mod:`~taskforge.protocol.state_ops`.
* :mod:`~taskforge.protocol.inspection`: the operator's reads and purges.
* :mod:`~taskforge.protocol.brokers`: the drivers bound to the protocol.
"""

__all__: list[str] = []
