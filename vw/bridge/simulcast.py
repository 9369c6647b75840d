"""Simulcast forwarding: each receiver gets one layer of each simulcast source, on SIM[0].

The conference hands this the decrypted packets of every layer of a simulcast video
source and the key frame requests receivers send about SIM[0]; it keeps one
:class:`VideoProjection` per (receiver, source), chooses the layer from the receiver's
video constraints and asks the sender for key frames when a receiver must switch. The
projections are also how the conference's loss repair sees each receiver's numbering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vw.bridge.allocator import LayerInfo
from vw.bridge.feedback import KeyframeRequester
from vw.bridge.projection import VideoProjection
from vw.bridge.sources import SourceDescription
from vw.rtp.rtcp import Fir, Pli


@dataclass(frozen=True)
class Layer:
    owner: str
    source: SourceDescription
    index: int


#: Seconds over which layer bitrates are measured.
MEASURE_INTERVAL = 1.0


class SimulcastRouter:
    """The simulcast state of one conference."""

    def __init__(self, request_keyframe: Callable[[str, bytes], None]) -> None:
        #: Called with (sender endpoint id, RTCP bytes) to ask a sender for a key frame.
        self._request_keyframe = request_keyframe
        self.layers: dict[int, Layer] = {}
        self.primaries: dict[int, Layer] = {}
        self.keyframes = KeyframeRequester()
        #: (receiver id, source primary SSRC) -> projection
        self.projections: dict[tuple[str, int], VideoProjection] = {}
        #: receiver id -> the layer index of each source primary the allocation chose
        self.targets: dict[str, dict[int, int]] = {}
        #: Layer SSRC -> bits per second it arrived at over the last measurement.
        self.bitrates: dict[int, float] = {}
        self._bytes: dict[int, int] = {}
        self._measured: float | None = None

    def set_sources(self, owner: str, sources: list[SourceDescription]) -> None:
        """Track the owner's simulcast video sources (more than one layer)."""
        self.remove_owner(owner)
        for source in sources:
            if source.media != "video" or len(source.layers) < 2:
                continue
            for index, ssrc in enumerate(source.layers):
                self.layers[ssrc] = Layer(owner, source, index)
            self.primaries[source.primary] = self.layers[source.primary]

    def remove_owner(self, owner: str) -> None:
        for ssrc, layer in list(self.layers.items()):
            if layer.owner == owner:
                del self.layers[ssrc]
                self.primaries.pop(ssrc, None)
                self.keyframes.forget(ssrc)
        for key in [k for k in self.projections if self.primaries.get(k[1]) is None]:
            del self.projections[key]

    def remove_receiver(self, receiver: str) -> None:
        self.targets.pop(receiver, None)
        for key in [k for k in self.projections if k[0] == receiver]:
            del self.projections[key]

    def set_target(self, receiver: str, primary: int, layer_index: int, now: float) -> None:
        """Forward ``layer_index`` of the source ``primary`` to ``receiver`` (-1: nothing)."""
        self.targets.setdefault(receiver, {})[primary] = layer_index
        layer = self.primaries.get(primary)
        if layer is None:
            return
        projection = self._projection(receiver, layer, now)
        if projection.set_target(layer_index):
            self._ask_keyframe(layer, projection, now)

    def _projection(self, receiver: str, layer: Layer, now: float) -> VideoProjection:
        key = (receiver, layer.source.primary)
        projection = self.projections.get(key)
        if projection is None:
            projection = self.projections[key] = VideoProjection(layer.source)
            self._retarget(receiver, layer, projection, now)
        return projection

    def _retarget(self, receiver: str, layer: Layer, projection: VideoProjection,
                  now: float) -> None:
        """A new projection starts on the allocated layer, or the top one before any
        allocation for this receiver."""
        wanted = self.targets.get(receiver, {}).get(layer.source.primary,
                                                    len(layer.source.layers) - 1)
        if projection.set_target(wanted):
            self._ask_keyframe(layer, projection, now)

    def _ask_keyframe(self, layer: Layer, projection: VideoProjection, now: float) -> None:
        ssrc = projection.keyframe_ssrc
        if ssrc is not None:
            request = self.keyframes.request(ssrc, now)
            if request is not None:
                self._request_keyframe(layer.owner, request)

    def forward(self, ssrc: int, packet: bytes, receivers: list[str],
                now: float) -> list[tuple[str, bytes]]:
        """The packet as each receiver should get it (nothing for layers it is not sent)."""
        layer = self.layers[ssrc]
        self._bytes[ssrc] = self._bytes.get(ssrc, 0) + len(packet)
        out = []
        for receiver in receivers:
            projection = self._projection(receiver, layer, now)
            rewritten = projection.rewrite(packet, now)
            if projection.keyframe_needed:
                self._ask_keyframe(layer, projection, now)
            if rewritten is not None:
                out.append((receiver, rewritten))
        return out

    def measure(self, now: float) -> None:
        """Update the layers' bitrates, at most every :data:`MEASURE_INTERVAL` seconds."""
        if self._measured is not None and now - self._measured < MEASURE_INTERVAL:
            return
        if self._measured is not None:
            elapsed = now - self._measured
            self.bitrates = {ssrc: self._bytes.get(ssrc, 0) * 8 / elapsed for ssrc in self.layers}
        self._bytes.clear()
        self._measured = now

    def layer_info(self, source: SourceDescription) -> list[LayerInfo]:
        """What the allocator knows of a source's layers: measured bitrates once there are
        some, a layer that sent nothing over the last measurement inactive."""
        if not self.bitrates or source.primary not in self.primaries:
            return [LayerInfo() for _ in source.layers]  # not measured (yet, or not simulcast)
        return [LayerInfo(bitrate_bps=self.bitrates.get(ssrc) or None,
                          active=self.bitrates.get(ssrc, 0.0) > 0) for ssrc in source.layers]

    def view(self, receiver: str, primary: int) -> VideoProjection | None:
        """How ``receiver`` sees the simulcast source ``primary``, once it has been sent some."""
        return self.projections.get((receiver, primary))

    def keyframe_requested(self, receiver: str, packet: Pli | Fir, now: float) -> None:
        """Pass a receiver's PLI or FIR about projected sources on to their senders."""
        primaries = ([ssrc for ssrc, _ in packet.entries] if isinstance(packet, Fir)
                     else [packet.media_ssrc])
        for primary in primaries:
            layer = self.primaries.get(primary)
            projection = self.projections.get((receiver, primary))
            if layer is None or projection is None:
                continue
            current = projection.current_layer
            ssrc = layer.source.layers[current] if current >= 0 else layer.source.primary
            request = self.keyframes.request(ssrc, now)
            if request is not None:
                self._request_keyframe(layer.owner, request)
