"""REST request parsing, formats, ErrorInfo bodies and credentials as the SDKs send them."""

import base64
import json

import msgpack
import pytest

from frontend.auth import AuthError
from frontend.rest.credentials import credentials
from frontend.rest.wire import RestError, RestRequest, error_response, respond
from kernel.errors import ErrorCode, ErrorInfo


def req(target=b"/channels/a%2Fb/messages", headers=(), body=b"", method=b"POST"):
    return RestRequest.parse(method, target, list(headers), body)


def test_path_segments_are_split_before_decoding():
    assert req().segments == ("channels", "a/b", "messages")


def test_bodies_decode_by_content_type_and_bad_ones_are_40001():
    packed = msgpack.packb({"name": "n", "data": b"\x01"}, use_bin_type=True)
    assert req(headers=[(b"content-type", b"application/x-msgpack")], body=packed).decode_body() == {
        "name": "n",
        "data": b"\x01",
    }
    assert req(body=b'[{"name":"x"}]').decode_body() == [{"name": "x"}]
    with pytest.raises(RestError) as exc:
        req(body=b"{nope").decode_body()
    assert exc.value.code == ErrorCode.INVALID_BODY


def test_the_answer_follows_format_then_accept():
    r = req(headers=[(b"accept", b"application/x-msgpack")])
    assert r.response_format == "msgpack"
    assert (
        req(target=b"/x?format=json", headers=[(b"accept", b"application/x-msgpack")]).response_format
        == "json"
    )
    resp = respond(r, 201, {"serials": ["e:1"]})
    assert resp.status == 201 and msgpack.unpackb(resp.body) == {"serials": ["e:1"]}


def test_errors_are_errorinfo_with_href_status_and_headers():
    resp = error_response(req(), ErrorInfo.of(ErrorCode.CAPABILITY_DENIED, "no"))
    assert resp.status == 401 and resp.code == 40160
    assert json.loads(resp.body) == {
        "error": {
            "code": 40160,
            "statusCode": 401,
            "message": "no",
            "href": "https://help.ably.io/error/40160",
        }
    }
    assert (b"x-ably-errorcode", b"40160") in resp.headers


def test_an_envelope_wraps_the_status():
    resp = respond(req(target=b"/x?envelope=json"), 404, {"error": 1})
    assert resp.status == 200 and json.loads(resp.body)["statusCode"] == 404


def test_basic_bearer_and_query_credentials():
    basic = base64.b64encode(b"app.k:secret")
    c = credentials(
        req(headers=[(b"authorization", b"Basic " + basic), (b"x-ably-clientid", base64.b64encode(b"bob"))])
    )
    assert (c.key, c.client_id, c.key_name) == ("app.k:secret", "bob", "app.k")
    bearer = base64.b64encode(b"ctk1.a.b")
    assert credentials(req(headers=[(b"authorization", b"Bearer " + bearer)])).token == "ctk1.a.b"
    assert credentials(req(headers=[(b"authorization", b"Bearer raw.jwt.x")])).token == "raw.jwt.x"
    assert credentials(req(target=b"/x?key=app.k:s")).key == "app.k:s"
    with pytest.raises(AuthError):
        credentials(req(headers=[(b"authorization", b"Digest x")]))
