"""Send and Data indications on the relay path agree with the general STUN codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vw.stun import (
    Data,
    DontFragment,
    Message,
    MessageClass,
    Method,
    RawAttribute,
    Software,
    XorPeerAddress,
)
from vw.turn import fastpath
from vw.turn.fastpath import data_indication, parse_send

PEER = ("198.51.100.7", 3478)


def send(*attributes: object, method: Method = Method.SEND) -> Message:
    return Message(method, MessageClass.INDICATION, attributes=list(attributes))  # type: ignore


@given(st.binary(max_size=300), st.booleans(), st.booleans(), st.booleans(),
       st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 0xFFFF)))
def test_usual_send_indications_are_read_as_the_codec_reads_them(
    payload: bytes, data_first: bool, dont_fragment: bool, fingerprint: bool,
    peer: tuple[str, int],
) -> None:
    attributes: list[object] = [XorPeerAddress(*peer), Data(payload)]
    if data_first:
        attributes.reverse()
    if dont_fragment:  # as turnutils_uclient -g sends them
        attributes.append(DontFragment())
    raw = send(*attributes).bytes(fingerprint=fingerprint)
    message = Message.parse(raw)
    assert parse_send(raw) == (message.get(XorPeerAddress).address,  # type: ignore[union-attr]
                               message.get(Data).value)  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", [
    send(XorPeerAddress("2001:db8::1", 5), Data(b"x")).bytes(),  # IPv6: the codec's
    send(XorPeerAddress(*PEER), Data(b"x"), Software("s")).bytes(),  # another attribute
    send(XorPeerAddress(*PEER), Data(b"x"), RawAttribute(0x0001, b"?")).bytes(),
    send(XorPeerAddress(*PEER), XorPeerAddress(*PEER), Data(b"x")).bytes(),  # twice
    send(XorPeerAddress(*PEER)).bytes(),  # no DATA
    send(Data(b"x")).bytes(),  # no peer
    send(XorPeerAddress(*PEER), Data(b"x"), method=Method.DATA).bytes(),  # not Send
    send(XorPeerAddress(*PEER), Data(b"x")).bytes()[:-4],  # truncated
    send(XorPeerAddress(*PEER), Data(b"x")).bytes() + b"\0\0\0\0",  # trailing bytes
    send(XorPeerAddress(*PEER), Data(b"x")).bytes(fingerprint=True)[:-1] + b"\0",  # bad CRC
    b"\0\x16\0\0" + bytes(16),  # bad cookie
    b"\0\x16",
])
def test_anything_else_is_left_to_the_codec(raw: bytes) -> None:
    assert parse_send(raw) is None


@given(st.binary(min_size=20, max_size=80))
def test_garbage_never_raises(raw: bytes) -> None:
    parse_send(b"\0\x16" + raw[2:4] + b"\x21\x12\xa4\x42" + raw[8:])


@pytest.mark.parametrize("peer", [PEER, ("2001:db8::1", 5)])
@pytest.mark.parametrize("size", [0, 1, 3, 4, 120])
def test_data_indications_match_the_codec(
    monkeypatch: pytest.MonkeyPatch, peer: tuple[str, int], size: int
) -> None:
    monkeypatch.setattr(fastpath.os, "urandom", lambda n: bytes(range(n)))
    payload = bytes(range(size))
    expected = Message(Method.DATA, MessageClass.INDICATION, bytes(range(12)),
                       [XorPeerAddress(*peer), Data(payload)])
    raw = data_indication(peer, payload)
    assert Message.parse(raw) == Message.parse(expected.bytes())


def test_data_indications_that_cannot_be_written() -> None:
    with pytest.raises(ValueError):
        data_indication(("not an address", 1), b"x")
    with pytest.raises(ValueError):
        data_indication(PEER, bytes(0xFFFF))  # too big: the codec refuses
