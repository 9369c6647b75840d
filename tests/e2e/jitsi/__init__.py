"""A second, independent implementation of the Jitsi client protocol (lib-jitsi-meet's wire
behaviour, /work/shared/PROTOCOL.md) in Python: XMPP over WebSocket (:mod:`.xmpp`), Jingle to
unified-plan SDP and back (:mod:`.sdp`), and a conference participant with aiortc media
(:mod:`.client`)."""
