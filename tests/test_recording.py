"""Recording at the hall: the programme as received, no transcoding, readable by ffprobe."""

import asyncio
import json
import shutil
import subprocess

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from tests.conftest import wait_for
from tests.tree import start_tree


def _probe(path) -> dict:
    ffprobe = shutil.which("ffprobe")
    assert ffprobe, "ffprobe is not installed: apt-get install -y ffmpeg"
    out = subprocess.run([ffprobe, "-v", "error", "-show_streams", "-show_format", "-count_packets", "-of", "json",
                          str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


async def test_the_hall_records_the_programme_as_received_to_a_file_ffprobe_reads(
        start_orchestrator, start_relay, signer, secrets_dir, tmp_path):
    tree = await start_tree(start_orchestrator, start_relay, signer, secrets_dir, fps=15)
    orch = tree.orch
    hall = HallDaemon(EdgeSettings(hall="HN-01", orchestrator_url=orch.control_url, qoe=False,
                                   credential=orch.credential("HN-01"), ice_addresses=["127.0.0.1"],
                                   record_dir=str(tmp_path / "rec")))
    hall.start()
    try:
        await wait_for(lambda: hall.stats().recorded_s > 4.0, 30, what="four seconds recorded")
        frames = hall.recorder.video_frames
    finally:
        await hall.stop()
        await tree.stop()
    files = list((tmp_path / "rec").glob("HN-01-programme-*.webm"))
    assert len(files) == 1
    info = _probe(files[0])
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "vp8" and streams["audio"]["codec_name"] == "opus"
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 180)  # the studio's own encoding
    assert int(streams["video"]["nb_read_packets"]) >= frames - 1 and frames >= 45
    assert int(streams["audio"]["nb_read_packets"]) >= 150  # 20 ms Opus packets over 4 s
    duration = float(info["format"]["duration"])
    assert 3.5 <= duration <= 8.0, duration
    # and it decodes: ffmpeg reads every frame back without an error
    out = subprocess.run([shutil.which("ffmpeg"), "-v", "error", "-i", str(files[0]), "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr[-2000:]
    print(f"recorded {frames} frames, {duration:.1f} s: {files[0].name}")
    await asyncio.sleep(0)
