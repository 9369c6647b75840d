"""STUN (RFC 8489) messages for ICE (RFC 8445) and TURN (RFC 8656, RFC 6062), sans-IO.

- :mod:`vw.stun.message`: :class:`Message` (``parse``/``bytes``), :func:`is_stun`.
- :mod:`vw.stun.attributes`: one frozen dataclass per attribute; unknown ones are
  :class:`RawAttribute`.
- :mod:`vw.stun.integrity`: :func:`check_integrity`, :func:`check_fingerprint`, credential keys.
- :mod:`vw.stun.channeldata`: TURN :class:`ChannelData` and :func:`parse_stream` for TCP/TLS.
- :mod:`vw.stun.errors`: :class:`StunError` (a ValueError) and its subclasses.

A server answering a request::

    try:
        request = Message.parse(datagram)
    except StunError as e:
        ...  # a request gets an error response with e.code (400); anything else is dropped
    if unknown := request.unknown_comprehension_required():
        reply = request.error_response(420, UnknownAttributes(tuple(unknown)))
    elif not check_integrity(request, short_term_key(ice_pwd)):
        reply = request.error_response(401)
    else:
        reply = request.success_response(XorMappedAddress(host, port))
    send(reply.bytes(short_term_key(ice_pwd), fingerprint=True))
"""

from vw.stun.attributes import (
    ATTRIBUTE_CLASSES,
    MAX_TEXT_BYTES,
    MAX_USERNAME_BYTES,
    AdditionalAddressFamily,
    AddressErrorCode,
    AlternateServer,
    Attribute,
    ChannelNumber,
    ConnectionId,
    Data,
    DontFragment,
    ErrorCode,
    EvenPort,
    Fingerprint,
    IceControlled,
    IceControlling,
    Icmp,
    Lifetime,
    MappedAddress,
    MessageIntegrity,
    MessageIntegritySha256,
    Nonce,
    PasswordAlgorithm,
    PasswordAlgorithms,
    Priority,
    RawAttribute,
    Realm,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    Software,
    UnknownAttributes,
    UseCandidate,
    Userhash,
    Username,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
)
from vw.stun.channeldata import (
    MAX_CHANNEL_DATA_SIZE,
    MAX_FRAME_SIZE,
    ChannelData,
    is_channel_data,
    is_channel_number,
    parse_stream,
)
from vw.stun.constants import (
    CHANNEL_MAX,
    CHANNEL_MAX_RFC5766,
    CHANNEL_MIN,
    ERROR_REASONS,
    FAMILY_IPV4,
    FAMILY_IPV6,
    MAGIC_COOKIE,
    MAX_MESSAGE_SIZE,
    PASSWORD_ALGORITHM_MD5,
    PASSWORD_ALGORITHM_SHA256,
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    AttributeType,
    MessageClass,
    Method,
    is_comprehension_required,
)
from vw.stun.errors import (
    AttributeFormatError,
    AttributeOverrunError,
    ChannelDataError,
    HeaderError,
    StreamError,
    StunError,
    TruncatedError,
)
from vw.stun.integrity import (
    check_fingerprint,
    check_integrity,
    long_term_key,
    short_term_key,
    userhash,
)
from vw.stun.message import Message, is_stun, new_transaction_id

__all__ = [
    "ATTRIBUTE_CLASSES",
    "CHANNEL_MAX",
    "CHANNEL_MAX_RFC5766",
    "CHANNEL_MIN",
    "ERROR_REASONS",
    "FAMILY_IPV4",
    "FAMILY_IPV6",
    "MAGIC_COOKIE",
    "MAX_CHANNEL_DATA_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_TEXT_BYTES",
    "MAX_USERNAME_BYTES",
    "PASSWORD_ALGORITHM_MD5",
    "PASSWORD_ALGORITHM_SHA256",
    "TRANSPORT_TCP",
    "TRANSPORT_UDP",
    "AdditionalAddressFamily",
    "AddressErrorCode",
    "AlternateServer",
    "Attribute",
    "AttributeFormatError",
    "AttributeOverrunError",
    "AttributeType",
    "ChannelData",
    "ChannelDataError",
    "ChannelNumber",
    "ConnectionId",
    "Data",
    "DontFragment",
    "ErrorCode",
    "EvenPort",
    "Fingerprint",
    "HeaderError",
    "IceControlled",
    "IceControlling",
    "Icmp",
    "Lifetime",
    "MappedAddress",
    "Message",
    "MessageClass",
    "MessageIntegrity",
    "MessageIntegritySha256",
    "Method",
    "Nonce",
    "PasswordAlgorithm",
    "PasswordAlgorithms",
    "Priority",
    "RawAttribute",
    "Realm",
    "RequestedAddressFamily",
    "RequestedTransport",
    "ReservationToken",
    "Software",
    "StreamError",
    "StunError",
    "TruncatedError",
    "UnknownAttributes",
    "UseCandidate",
    "Userhash",
    "Username",
    "XorMappedAddress",
    "XorPeerAddress",
    "XorRelayedAddress",
    "check_fingerprint",
    "check_integrity",
    "is_channel_data",
    "is_channel_number",
    "is_comprehension_required",
    "is_stun",
    "long_term_key",
    "new_transaction_id",
    "parse_stream",
    "short_term_key",
    "userhash",
]
