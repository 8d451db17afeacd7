"""requests' adapter whose urllib3 connections report to the ``timeouts.Call`` sending through
them, so that the Call's deadline can shut the right socket down, and tell it when the body's
upload starts and ends (the upload is bounded by its progress, not by the deadline)."""
from __future__ import annotations

from typing import Any

from requests.adapters import HTTPAdapter
from urllib3 import PoolManager, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import timeouts


class _Reporting:
    sock: Any

    def connect(self) -> None:
        _report(self)                     # a new connection: the TLS handshake is bounded too
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._send(super().request, *args, **kwargs)  # type: ignore[misc]

    def request_chunked(self, *args: Any, **kwargs: Any) -> None:     # urllib3 1.26's chunked bodies
        self._send(super().request_chunked, *args, **kwargs)  # type: ignore[misc]

    def _send(self, send: Any, *args: Any, **kwargs: Any) -> None:
        call = _report(self)              # a pooled one, connected already
        if call is None:
            send(*args, **kwargs)
            return
        if self.sock is None:             # plain http connects lazily, inside send: do it first,
            self.connect()                # under the deadline, as https does
        call.start_upload()
        send(*args, **kwargs)             # the headers and the whole body, into the socket
        call.end_upload()


def _report(connection: Any) -> Any:
    call = timeouts.current()
    if call is not None:                  # None: a request outside a Call, e.g. warm()'s HEAD
        call.attach(connection)
    return call


class _HTTPConnection(_Reporting, HTTPConnection):
    pass


class _HTTPSConnection(_Reporting, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _PoolManager(PoolManager):
    # How urllib3 lets a PoolManager choose its pool classes ("so other PoolManagers can
    # override them"), as its own SOCKSProxyManager does.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool_classes_by_scheme = _POOLS


class _ProxyManager(ProxyManager):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool_classes_by_scheme = _POOLS


class ReportingAdapter(HTTPAdapter):
    """For one host, ``size`` connections, no retries, never blocking for a pooled connection:
    the caller limits how many requests are in flight and waits within its own deadline.

    A SOCKS proxy brings its own pools, whose connections do not report: there only the socket
    timeouts and the check after each chunk bound an answer.
    """

    def __init__(self, size: int) -> None:
        super().__init__(pool_connections=1, pool_maxsize=size, max_retries=0, pool_block=False)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)   # keeps the sizes
        self.poolmanager = _PoolManager(num_pools=connections, maxsize=maxsize, block=block,
                                        **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if proxy not in self.proxy_manager and not proxy.lower().startswith("socks"):
            # What requests would make (urllib3.proxy_from_url), with our pools.
            self.proxy_manager[proxy] = _ProxyManager(
                proxy, proxy_headers=self.proxy_headers(proxy), num_pools=self._pool_connections,
                maxsize=self._pool_maxsize, block=self._pool_block, **proxy_kwargs)
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def pool_for(self, request: Any, verify: Any, proxies: Any) -> Any:
        """The urllib3 pool ``request`` (a PreparedRequest) goes through, with its TLS settings:
        what ``send`` does before ``urlopen``. requests before 2.32.2 has only get_connection."""
        if hasattr(self, "get_connection_with_tls_context"):
            pool = self.get_connection_with_tls_context(request, verify, proxies=proxies)
        else:
            pool = self.get_connection(request.url, proxies)
        self.cert_verify(pool, request.url, verify, None)
        return pool
