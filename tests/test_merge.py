"""The hitless merge: two paths with their own numbering become one stream with nothing lost."""

import random

from aiortc.rtp import RtpPacket

from relay.merge import HitlessMerge


def programme(n: int, seed: int = 1) -> list[bytes]:
    """Distinct payloads as an encoder makes them, plus repeats (Opus silence) to be ambiguous."""
    rnd = random.Random(seed)
    return [b"\x00\x01" if i % 7 == 3 else rnd.randbytes(40) + i.to_bytes(4, "big") for i in range(n)]


def path_packets(payloads, seq0, ts0, step=3000):
    return [RtpPacket(payload_type=96, sequence_number=(seq0 + i) & 0xFFFF, timestamp=(ts0 + i * step) & 0xFFFFFFFF,
                      payload=p) for i, p in enumerate(payloads)]


def collect():
    out = []
    return out, (lambda pkt: out.append((pkt.sequence_number, pkt.timestamp, pkt.payload)))


def test_each_path_losing_different_packets_gives_a_complete_stream_in_the_first_paths_numbering():
    payloads = programme(600)
    a = path_packets(payloads, 65000, 4_294_000_000)  # wraps both lines
    b = path_packets(payloads, 123, 77)
    out, sink = collect()
    m = HitlessMerge(sink, None, 90000)
    lost_a = set(range(100, 600, 5)) | set(range(300, 340))
    lost_b = {i for i in range(101, 600, 10) if not 300 <= i < 340} | {i for i in range(400, 450) if i % 5}
    assert not lost_a & lost_b
    for i in range(600):
        # the paths race: sometimes one is ahead, sometimes the other
        order = [("a", a[i]), ("b", b[i])] if i % 3 != 1 else [("b", b[i]), ("a", a[i])]
        for name, pkt in order:
            if (name == "a" and i in lost_a) or (name == "b" and i in lost_b):
                continue
            m.push(name, pkt)
    # the first packets come from a (b's offset is learned on its first packet a already sent)
    assert [p for _, _, p in out] == payloads
    assert [s for s, _, _ in out] == [(65000 + i) & 0xFFFF for i in range(600)]
    assert [t for _, t, _ in out] == [(4_294_000_000 + i * 3000) & 0xFFFFFFFF for i in range(600)]
    st = m.stats()
    assert st["paths"][1]["placed"] and st["paths"][0]["forwarded"] + st["paths"][1]["forwarded"] == 600


def test_a_path_that_dies_costs_nothing_and_a_new_path_is_placed_by_what_it_carries():
    payloads = programme(900, seed=2)
    a = path_packets(payloads, 10, 1000)
    b = path_packets(payloads, 40000, 9_000_000)
    c = path_packets(payloads, 555, 123_456)  # a replacement path on a third relay
    out, sink = collect()
    m = HitlessMerge(sink, None, 90000)
    for i in range(900):
        if i < 300:
            m.push("a", a[i])
        if i >= 50:
            m.push("b", b[i])  # joins late, ahead of nothing: learns from a
        if i >= 500:
            m.push("c", c[i])
    assert [p for _, _, p in out] == payloads[:900]
    assert [s for s, _, _ in out] == [10 + i for i in range(900)]
    assert m.reanchored == 0


def test_a_relay_that_re_anchors_its_numbering_is_relearned_without_a_wrong_packet():
    payloads = programme(400, seed=3)
    a = path_packets(payloads, 100, 0)
    b = path_packets(payloads[:200], 5000, 0) + path_packets(payloads[200:], 31000, 7_000_000)
    out, sink = collect()
    m = HitlessMerge(sink, None, 90000)
    for i in range(400):
        m.push("a", a[i])
        m.push("b", b[i])
    assert [p for _, _, p in out] == payloads
    assert [s for s, _, _ in out] == [100 + i for i in range(400)]
    assert m.relearned == 1


def test_when_every_path_went_silent_the_next_one_continues_the_output_line():
    payloads = programme(200, seed=4)
    a = path_packets(payloads[:100], 7, 0)
    b = path_packets(payloads[150:], 9000, 50_000_000)
    out, sink = collect()
    m = HitlessMerge(sink, None, 90000)
    for p in a:
        m.push("a", p)
    m.paths["a"].last_at -= 5  # a went silent long ago
    for p in b:
        m.push("b", p)
    assert len(out) == 150 and m.reanchored == 1
    assert [s for s, _, _ in out] == [7 + i for i in range(150)]  # no jump in the sequence line
    assert out[100][1] != out[99][1]


def test_sender_reports_are_translated_once_a_path_is_placed():
    payloads = programme(10, seed=5)
    srs = []
    m = HitlessMerge(lambda p: None, lambda ntp, ts: srs.append(ts), 90000)
    b = path_packets(payloads, 300, 1_000_000)
    a = path_packets(payloads, 5, 20)
    m.sender_report("b", 1, 1_000_000)  # unknown path: dropped
    for i in range(2):  # two packets carried by both paths place b
        m.push("a", a[i])
        m.push("b", b[i])
    m.sender_report("b", 2, 1_003_000)
    assert srs == [3020]
