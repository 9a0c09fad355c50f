"""The Redis layer: connections, the request kinds, one driver core with a blocking and an
asyncio driver, the hot lane, the overlapped pipeline, and the reconnecting subscribe loop.

It knows nothing of jobs: the queue protocol (:mod:`taskforge.protocol`) builds on it.

* :mod:`~taskforge.driver.connection`: clients of every deployment kind, built from settings.
* :mod:`~taskforge.driver.requests`: what an operation may ask (script call, command, batch, ...).
* :mod:`~taskforge.driver.core`: what each request sends, written once for both drivers.
* :mod:`~taskforge.driver.sync_driver`, :mod:`~taskforge.driver.async_driver`: the two drivers.
* :mod:`~taskforge.driver.hot_lane`: a held connection for the per-job enqueue call.
* :mod:`~taskforge.driver.overlapped`: bulk script calls pipelined one call behind.
* :mod:`~taskforge.driver.subscribe`: pub/sub that resubscribes after a lost connection.
"""

__all__: list[str] = []
