"""REST requests and responses as the Ably SDKs send and expect them. Pure, no I/O.

- A request body is msgpack when its Content-Type says ``application/x-msgpack``, JSON
  otherwise (an empty body is None). Anything that does not decode is 40001.
- A response is msgpack when the ``format`` parameter says so, or when ``format`` is absent
  and the Accept header asks for ``application/x-msgpack``; JSON otherwise. Binary data in
  JSON messages is base64 with ``/base64`` appended to its encoding (RSL4d).
- An error is an Ably ErrorInfo ``{"error": {code, statusCode, message, href}}`` with the
  HTTP status Ably pairs with the code, plus ``X-Ably-ErrorCode`` / ``X-Ably-ErrorMessage``.
- ``envelope=json|msgpack`` wraps the answer as ``{statusCode, response, headers}`` with
  status 200, for clients that cannot read statuses or Link headers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import msgpack

from kernel.errors import ErrorCode, ErrorInfo, RefusedError
from kernel.protocol import Format, to_json_wire

MSGPACK = b"application/x-msgpack"
JSON = b"application/json"
HREF = "https://help.ably.io/error/{code}"


class RestError(RefusedError):
    """A REST request refused with an Ably error code (the status follows from the code)."""


@dataclass(frozen=True, slots=True)
class RestRequest:
    method: str
    segments: tuple[str, ...]  # the path split on "/" and each part %-decoded
    params: Mapping[str, str]
    headers: Mapping[bytes, bytes]  # lower-cased names; the first of a repeated header wins
    body: bytes

    @classmethod
    def parse(
        cls, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> RestRequest:
        parts = urlsplit(target.decode("latin-1"))
        # Split before decoding: a channel name may hold an encoded "/".
        segments = tuple(unquote(s) for s in parts.path.split("/")[1:])
        params: dict[str, str] = {}
        for pname, pvalue in parse_qsl(parts.query, keep_blank_values=True):
            params.setdefault(pname, pvalue)
        hdrs: dict[bytes, bytes] = {}
        for name, value in headers:
            hdrs.setdefault(name.lower(), value)
        return cls(method.decode("latin-1").upper(), segments, params, hdrs, body)

    def header(self, name: bytes) -> str | None:
        v = self.headers.get(name)
        return None if v is None else v.decode("latin-1")

    @property
    def response_format(self) -> Format:
        fmt = self.params.get("format")
        if fmt in ("json", "msgpack"):
            return "msgpack" if fmt == "msgpack" else "json"
        return "msgpack" if MSGPACK in self.headers.get(b"accept", b"") else "json"

    def decode_body(self) -> Any:
        """The body as data; RestError 40001 when it does not decode."""
        if not self.body:
            return None
        ctype = self.headers.get(b"content-type", b"")
        try:
            if MSGPACK in ctype:
                return msgpack.unpackb(self.body, raw=False, strict_map_key=False)
            return json.loads(self.body)
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
            kind = "msgpack" if MSGPACK in ctype else "JSON"
            raise RestError(ErrorCode.INVALID_BODY, f"malformed {kind} body: {type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class RestResponse:
    status: int
    content_type: bytes
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    code: int = 0  # the Ably error code, 0 for a success (for metrics)


def _json_default(value: object) -> object:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_safe_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with binary data base64-encoded for a JSON reader (RSL4d)."""
    return list(to_json_wire({"messages": messages})["messages"])


def encode(value: Any, fmt: Format) -> tuple[bytes, bytes]:
    """``(content_type, body)`` of ``value`` in ``fmt``."""
    if fmt == "msgpack":
        return MSGPACK, msgpack.packb(value, use_bin_type=True)
    return JSON, json.dumps(value, separators=(",", ":"), default=_json_default).encode()


def respond(
    req: RestRequest,
    status: int,
    value: Any,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    code: int = 0,
) -> RestResponse:
    """An answer in the request's format, enveloped when it asked for an envelope."""
    envelope = req.params.get("envelope")
    if envelope in ("json", "msgpack"):
        hdrs = {k.decode(): v.decode("latin-1") for k, v in headers or []}
        value = {"statusCode": status, "response": value, "headers": hdrs}
        ctype, body = encode(value, "msgpack" if envelope == "msgpack" else "json")
        return RestResponse(200, ctype, body, list(headers or []), code)
    ctype, body = encode(value, req.response_format)
    return RestResponse(status, ctype, body, list(headers or []), code)


def error_body(info: ErrorInfo) -> dict[str, Any]:
    return {"error": {**info.to_wire(), "href": HREF.format(code=info.code)}}


def error_response(req: RestRequest, info: ErrorInfo) -> RestResponse:
    headers = [
        (b"x-ably-errorcode", str(info.code).encode()),
        (b"x-ably-errormessage", info.message.encode("ascii", "replace")[:512]),
    ]
    return respond(req, info.status_code, error_body(info), headers, code=info.code)
