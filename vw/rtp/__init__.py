"""RTP-level protocols for the bridge, all sans-IO.

- :mod:`vw.rtp.rtp`: RTP packets, header extensions, RTX, hot-path peek/rewrite helpers.
- :mod:`vw.rtp.extensions`: header extension values and raw-packet extension access.
- :mod:`vw.rtp.rtcp`: RTCP packets, compound parsing, reception statistics.
- :mod:`vw.rtp.vp8` / :mod:`vw.rtp.h264`: payload inspection for keyframes and layer switching.
- :mod:`vw.rtp.dtls` / :mod:`vw.rtp.srtp`: DTLS-SRTP keying and SRTP protection.
"""
