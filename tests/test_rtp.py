"""Keyframe detection on real encoder output, and the studio's burnt-in frame code."""

import fractions

from aiortc.codecs import get_decoder, get_encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from relay.rtp import h264_is_keyframe_start, vp8_is_keyframe_start
from relay.studio import PatternGenerator, decode_code_strip

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def _encode(n=5, force_first=True):
    enc = get_encoder(VP8)
    gen = PatternGenerator(320, 180)
    out = []
    for i in range(n):
        f = gen.frame(i, 1_700_000_000.0 + i / 30)
        f.pts = i * 3000
        f.time_base = fractions.Fraction(1, 90000)
        payloads, _ = enc.encode(f, force_keyframe=(i == 0 and force_first))
        out.append(payloads)
    return out


def test_vp8_keyframe_start_is_detected_only_on_the_first_packet_of_a_keyframe():
    frames = _encode(4)
    assert vp8_is_keyframe_start(frames[0][0])
    assert not any(vp8_is_keyframe_start(p) for p in frames[0][1:])
    assert not any(vp8_is_keyframe_start(p) for fr in frames[1:] for p in fr)


def test_keyframe_detectors_survive_junk():
    for junk in (b"", b"\x00", b"\x10", b"\xff" * 3, b"\x90\x80"):
        vp8_is_keyframe_start(junk)
        h264_is_keyframe_start(junk)
    assert h264_is_keyframe_start(bytes([0x65, 0x88]))  # IDR
    assert h264_is_keyframe_start(bytes([0x7C, 0x85, 0x00]))  # FU-A start of IDR
    assert not h264_is_keyframe_start(bytes([0x7C, 0x05, 0x00]))  # FU-A middle
    assert h264_is_keyframe_start(bytes([24, 0, 2, 0x67, 0x42]))  # STAP-A with SPS


def test_burnt_in_frame_code_survives_vp8_encoding_and_decoding():
    frames = _encode(3)
    dec = get_decoder(VP8)
    from aiortc.codecs.vpx import vp8_depayload

    for i, payloads in enumerate(frames):
        data = b"".join(vp8_depayload(p) for p in payloads)
        decoded = dec.decode(JitterFrame(data=data, timestamp=i * 3000))
        y = decoded[0].to_ndarray(format="gray")
        frame_no, capture_ms = decode_code_strip(y)
        assert frame_no == i
        assert capture_ms == int((1_700_000_000.0 + i / 30) * 1000) & ((1 << 40) - 1)
