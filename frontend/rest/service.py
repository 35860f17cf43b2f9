"""The REST front: routes Ably REST requests to publish, history, channels and tokens.

Routes (Ably's REST API):

- ``POST /channels/{id}/messages``: publish one message or an array (``frontend.rest.publish``)
- ``GET /channels/{id}/messages``: history, paged with Link headers (``frontend.rest.history``)
- ``GET /channels/{id}``: channel details with occupancy; ``GET /channels``: active channels
- ``POST /messages``: batch publish, one result per BatchPublishSpec (RSC22)
- ``POST /keys/{keyName}/requestToken``: TokenDetails for a signed TokenRequest or for a request
  authenticated with that key (``frontend.tokens``)
- ``POST /keys/{keyName}/revokeTokens``: revoke the key's tokens by clientId or revocation key,
  cluster-wide (RSA17, ``frontend.rest.revoke``)
- ``GET /presence?channels=a,b``: batch presence (RSC24, ``frontend.rest.batch_presence``)

Every request but a signed token request is authenticated (Basic or Bearer,
``frontend.rest.credentials``). Every failure is answered as an Ably ErrorInfo with its
status, logged and counted (``continuity_rest_requests{route,code}``); nothing a client sends
can take the frontend down. The front door calls ``serves`` then ``handle``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import structlog

from frontend.auth import AuthError, Identity, allows
from frontend.rest.batch_presence import batch_presence, channel_names
from frontend.rest.channels import ChannelDirectory
from frontend.rest.credentials import Credentials, credentials, identify
from frontend.rest.history import HistoryQuery, HistoryReader, LogHistory
from frontend.rest.nonces import NonceGuard
from frontend.rest.publish import MAX_BATCH_SPECS, RestPublisher, check_channel, parse_messages
from frontend.rest.revoke import TokenRevoker
from frontend.rest.wire import (
    RestError,
    RestRequest,
    RestResponse,
    error_response,
    json_safe_messages,
    respond,
)
from frontend.tokens import TokenAuthenticator, issue, verify_request
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import to_json_wire

if TYPE_CHECKING:
    from frontend.node import FrontendNode

log = structlog.get_logger("continuity.frontend")

ROOTS = frozenset({"channels", "messages", "keys", "time", "presence"})


class RestService:
    def __init__(
        self, node: FrontendNode, now_ms: Callable[[], int], history: HistoryReader | None = None
    ) -> None:
        self.node = node
        self.now_ms = now_ms
        self.publisher = RestPublisher(node, now_ms)
        self.history: HistoryReader = history or LogHistory(node, now_ms)
        self.directory = ChannelDirectory(node)
        self.nonces = NonceGuard(node, now_ms)
        self.revoker = TokenRevoker(node, now_ms)

    @staticmethod
    def serves(path: str) -> bool:
        """Whether ``path`` (raw, undecoded) is a REST route."""
        return path.split("/", 2)[1] in ROOTS if path.startswith("/") else False

    async def handle(
        self, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> RestResponse:
        req = RestRequest.parse(method, target, headers, body)
        route = self._route_name(req)
        try:
            resp = await self._dispatch(req)
        except (RestError, AuthError) as exc:
            info = exc.info()
            log.info("rest.refused", route=route, code=info.code, reason=info.message)
            if isinstance(exc, AuthError):
                self.node.metrics.auth_failures.labels(code=str(info.code)).inc()
            resp = error_response(req, info)
        except Exception:
            log.exception("rest.failed", route=route)
            resp = error_response(req, ErrorInfo.of(ErrorCode.INTERNAL, "internal error"))
        self.node.metrics.rest_requests.labels(route=route, code=str(resp.code)).inc()
        return resp

    @staticmethod
    def _route_name(req: RestRequest) -> str:
        seg = req.segments
        if seg[:1] == ("channels",):
            return "channels" if len(seg) < 2 else ("channel" if len(seg) == 2 else f"channel_{seg[2]}"[:24])
        if seg[:1] == ("keys",):
            return "revoke_tokens" if seg[2:] == ("revokeTokens",) else "request_token"
        if seg == ("presence",):
            return "batch_presence"
        return "batch_publish" if seg == ("messages",) else "other"

    async def _dispatch(self, req: RestRequest) -> RestResponse:
        seg, method = req.segments, req.method
        if len(seg) == 3 and seg[0] == "keys" and seg[2] == "requestToken":
            self._expect(method, "POST")
            return await self._request_token(req, seg[1])
        if len(seg) == 3 and seg[0] == "keys" and seg[2] == "revokeTokens":
            self._expect(method, "POST")
            return respond(req, 200, await self.revoker.revoke(req, seg[1]))
        if seg == ("time",):
            self._expect(method, "GET")
            return respond(req, 200, [self.now_ms()])  # in the asked format (msgpack too); no auth
        ident = identify(self.node.auth, self.now_ms(), credentials(req))
        if seg == ("messages",):
            self._expect(method, "POST")
            return await self._batch_publish(req, ident)
        if seg == ("channels",):
            self._expect(method, "GET")
            return await self._list_channels(req, ident)
        if seg == ("presence",):
            self._expect(method, "GET")
            names = channel_names(req.params.get("channels"))
            result = await batch_presence(self.node, self.now_ms(), ident, names)
            if req.response_format == "json":
                result["results"] = [to_json_wire(r) for r in result["results"]]
            return respond(req, 200, result)
        if len(seg) == 2 and seg[0] == "channels":
            self._expect(method, "GET")
            return await self._details(req, ident, check_channel(seg[1]))
        if len(seg) == 3 and seg[0] == "channels" and seg[2] == "messages":
            channel = check_channel(seg[1])
            if method == "POST":
                published = await self.publisher.publish(ident, channel, parse_messages(req.decode_body()))
                return respond(req, 201, published.to_wire())
            self._expect(method, "GET")
            return await self._history(req, ident, channel)
        raise RestError(ErrorCode.NOT_FOUND, f"no such path: /{'/'.join(seg)}")

    @staticmethod
    def _expect(method: str, wanted: str) -> None:
        if method != wanted:
            # Ably answers a method a resource does not take as a missing resource (40400).
            raise RestError(ErrorCode.NOT_FOUND, f"no such resource: {method} here (use {wanted})")

    # -- publish ---------------------------------------------------------------

    async def _batch_publish(self, req: RestRequest, ident: Identity) -> RestResponse:
        body = req.decode_body()
        specs = [body] if isinstance(body, dict) else body
        if not isinstance(specs, list) or not specs or len(specs) > MAX_BATCH_SPECS:
            raise RestError(
                ErrorCode.INVALID_BODY, f"the body must be 1..{MAX_BATCH_SPECS} BatchPublishSpecs"
            )
        results = []
        for spec in specs:
            channels = spec.get("channels") if isinstance(spec, dict) else None
            if isinstance(channels, str):
                channels = [channels]
            if (
                not isinstance(channels, list)
                or not channels
                or not all(isinstance(c, str) for c in channels)
            ):
                raise RestError(ErrorCode.INVALID_BODY, "a BatchPublishSpec needs channels: [names]")
            messages = parse_messages(spec.get("messages"))
            ok: list[dict[str, Any]] = []
            for name in channels:
                try:
                    published = await self.publisher.publish(ident, check_channel(name), messages)
                    ok.append(published.to_wire())
                except RestError as exc:
                    ok.append({"channel": name, "error": exc.info().to_wire()})
            failures = sum(1 for r in ok if "error" in r)
            results.append({"successCount": len(ok) - failures, "failureCount": failures, "results": ok})
        if isinstance(body, dict):
            # One spec (not an array): Ably answers the flat per-channel results.
            return respond(req, 201, results[0]["results"])
        return respond(req, 201, results)

    # -- history and channels ----------------------------------------------------

    async def _history(self, req: RestRequest, ident: Identity, channel: str) -> RestResponse:
        if not allows(ident.capability, channel, "history"):
            raise RestError(
                ErrorCode.CAPABILITY_DENIED, f"permission denied to read the history of {channel}"
            )
        query = HistoryQuery.from_params(req.params)
        page = await self.history.read(channel, query)
        messages = page.messages if req.response_format == "msgpack" else json_safe_messages(page.messages)

        def link(cursor: str | None, rel: str) -> str:
            return f'<./messages?{urlencode(query.to_params(cursor=cursor), quote_via=quote)}>; rel="{rel}"'

        links = [link(None, "first"), link(query.cursor, "current")]
        if page.next_cursor is not None:
            links.append(link(page.next_cursor, "next"))
        return respond(req, 200, messages, [(b"link", ", ".join(links).encode())])

    async def _details(self, req: RestRequest, ident: Identity, channel: str) -> RestResponse:
        if not any(
            allows(ident.capability, channel, op) for op in ("channel-metadata", "subscribe", "publish")
        ):
            raise RestError(
                ErrorCode.CAPABILITY_DENIED, f"permission denied to read the details of {channel}"
            )
        return respond(req, 200, await self.directory.details(channel))

    async def _list_channels(self, req: RestRequest, ident: Identity) -> RestResponse:
        try:
            limit = int(req.params.get("limit") or 100)
        except ValueError:
            raise RestError(ErrorCode.INVALID_PARAMETER, "limit must be an integer") from None
        if not 1 <= limit <= 1000:
            raise RestError(ErrorCode.INVALID_PARAMETER, "limit must be 1..1000")
        names = [
            n
            for n in await self.directory.names(req.params.get("prefix") or "", limit)
            if allows(ident.capability, n, "channel-metadata") or allows(ident.capability, n, "subscribe")
        ]
        if req.params.get("by") == "id":
            return respond(req, 200, names)
        details = [await self.directory.details(n) for n in names]
        return respond(req, 200, details)

    # -- tokens ----------------------------------------------------------------

    async def _request_token(self, req: RestRequest, key_name: str) -> RestResponse:
        auth = self.node.auth
        if not isinstance(auth, TokenAuthenticator):
            raise RestError(ErrorCode.NOT_FOUND, "this frontend does not issue tokens")
        now = self.now_ms()
        body = req.decode_body()
        params = body if isinstance(body, dict) else {}
        if body is not None and not isinstance(body, dict):
            raise RestError(ErrorCode.INVALID_BODY, "the body must be a TokenRequest or TokenParams object")
        if params.get("keyName") not in (None, key_name):
            raise RestError(ErrorCode.INCOMPATIBLE_CREDENTIALS, "the TokenRequest is for another key")
        if "mac" in params:
            key = auth.key_for(key_name)
            if key is None:
                raise RestError(ErrorCode.INVALID_CREDENTIALS, f"no such key: {key_name}")
            if key.secret or not auth.dev:
                nonce = verify_request(now, key, params)
                if not await self.nonces.first_use(key_name, nonce):
                    raise RestError(ErrorCode.NONCE_REPLAYED, "token request nonce was used already")
        else:
            creds: Credentials = credentials(req)
            if creds.key is None:
                raise RestError(
                    ErrorCode.UNAUTHORIZED, "requestToken needs a signed TokenRequest or Basic auth"
                )
            identify(auth, now, creds)
            if creds.key_name != key_name:
                raise RestError(
                    ErrorCode.INCOMPATIBLE_CREDENTIALS, "requestToken for another key than the one used"
                )
            key = auth.key_for(key_name, creds.key_secret)
            if key is None:
                raise RestError(ErrorCode.INVALID_CREDENTIALS, f"no such key: {key_name}")
        details = issue(now, key, params)
        log.info(
            "rest.token_issued", key_name=key_name, client_id=details.client_id, expires=details.expires_ms
        )
        return respond(req, 200, details.to_wire())
