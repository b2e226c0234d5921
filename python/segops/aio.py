"""AsyncSegOpsClient: the client for asyncio applications (FastAPI,
Starlette, aiohttp).

track(), identify() and reset_session() are the plain, non-blocking
calls of SegOpsClient: call them from a coroutine without await.
flush(), shutdown() and close() are coroutines: the blocking part
(handing over what is held, then waiting for segopsd's flush reply) runs
in the event loop's default executor, so the loop keeps serving
requests meanwhile. ``async with`` flushes and stops on exit.
"""

import asyncio
import functools

from .client import SegOpsClient
from .errors import SegOpsError


class AsyncSegOpsClient(SegOpsClient):
    """SegOpsClient with awaitable flush(), shutdown() and close()."""

    async def flush(self, timeout=None):
        """As SegOpsClient.flush(), without blocking the event loop."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, functools.partial(self._flush, timeout))

    async def shutdown(self, timeout=None):
        """As SegOpsClient.shutdown(), without blocking the event loop."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, functools.partial(SegOpsClient.shutdown, self, timeout))

    close = shutdown
    aclose = shutdown

    def shutdown_sync(self, timeout=None):
        """The blocking shutdown, for code outside the event loop."""
        SegOpsClient.shutdown(self, timeout)

    def __enter__(self):
        raise TypeError('use "async with" with AsyncSegOpsClient')

    def __exit__(self, exc_type, exc, tb):   # pragma: no cover
        return False

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        if exc_type is None:
            await self.shutdown()
            return False
        try:
            await self.shutdown()
        except SegOpsError as e:
            self._report(e)
        return False
