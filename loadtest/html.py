"""The load test's report as one self-contained HTML page (inline SVG plots, no scripts, no network).

Plots: join-time CDF; delivered ratio per hall (the worst participant there); a freeze timeline
per hall (every gap between complete frames a participant saw, as a bar where it happened) with the
faults marked; CPU and memory per kind of process.
"""

from __future__ import annotations

import html
import time

W = 900  # plot width in px


def _e(v) -> str:
    return html.escape(str(v))


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _axis(x0: float, y0: float, w: float, h: float, xmax: float, xlabel: str, ymax: float, ylabel: str,
          yticks: int = 4, xticks: int = 5) -> str:
    out = [f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" class="ax"/>',
           f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + h}" class="ax"/>']
    for i in range(xticks + 1):
        x = x0 + w * i / xticks
        out.append(f'<text x="{x:.1f}" y="{y0 + h + 16}" class="t" text-anchor="middle">{_fmt(xmax * i / xticks, 0)}</text>')
    for i in range(yticks + 1 if yticks else 0):
        y = y0 + h - h * i / yticks
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" class="t" text-anchor="end">{_fmt(ymax * i / yticks, 2 if ymax <= 1.5 else 0)}</text>')
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" class="grid"/>')
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 34}" class="t" text-anchor="middle">{_e(xlabel)}</text>')
    out.append(f'<text x="14" y="{y0 + h / 2}" class="t" transform="rotate(-90 14 {y0 + h / 2})" text-anchor="middle">{_e(ylabel)}</text>')
    return "".join(out)


def join_cdf(rows: list[dict]) -> str:
    joins = sorted(r["join_ms"] for r in rows if r.get("connected") and r.get("join_ms", -1) >= 0)
    h, x0, y0, w = 220, 60, 10, W - 80
    if not joins:
        return "<p>No participant connected.</p>"
    xmax = max(joins) * 1.05 or 1.0
    pts = " ".join(f"{x0 + w * v / xmax:.1f},{y0 + h - h * (i + 1) / len(joins):.1f}" for i, v in enumerate(joins))
    return (f'<svg id="join-cdf" viewBox="0 0 {W} {h + 50}" role="img" aria-label="join time CDF">'
            + _axis(x0, y0, w, h, xmax, "join time (ms): API call to WHEP session connected", 1.0, "fraction")
            + f'<polyline points="{pts}" class="line"/></svg>')


def delivered_per_hall(rows: list[dict], halls: list[str]) -> str:
    worst: dict[str, float] = {}
    for r in rows:
        if r.get("connected"):
            worst[r["hall"]] = min(worst.get(r["hall"], 1.0), r.get("delivered_ratio", 0.0))
    h, x0, y0 = 200, 60, 10
    w = W - 80
    n = max(len(halls), 1)
    bw = w / n
    bars = []
    for i, hall in enumerate(halls):
        v = worst.get(hall)
        if v is None:
            bars.append(f'<rect x="{x0 + i * bw + 1:.1f}" y="{y0}" width="{max(bw - 2, 1):.1f}" height="{h}" class="none">'
                        f'<title>{_e(hall)}: no participant connected</title></rect>')
            continue
        bh = h * max(min(v, 1.0), 0.0)
        cls = "ok" if v >= 0.99 else "warn" if v >= 0.95 else "bad"
        bars.append(f'<rect x="{x0 + i * bw + 1:.1f}" y="{y0 + h - bh:.1f}" width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" '
                    f'class="{cls}" data-hall="{_e(hall)}"><title>{_e(hall)}: {v:.4f}</title></rect>')
    labels = "".join(f'<text x="{x0 + (i + 0.5) * bw:.1f}" y="{y0 + h + 12}" class="t s" text-anchor="middle">{_e(hall)}</text>'
                     for i, hall in enumerate(halls)) if n <= 24 else ""
    return (f'<svg id="delivered" viewBox="0 0 {W} {h + 50}" role="img" aria-label="delivered ratio per hall">'
            + _axis(x0, y0, w, h, n, "halls (worst participant in each)", 1.0, "delivered ratio", xticks=1)
            + "".join(bars) + labels + "</svg>")


def freeze_timeline(rows: list[dict], halls: list[str], faults: list[dict], start: float, duration: float) -> str:
    row_h, x0, y0 = 12, 70, 10
    w = W - 90
    h = row_h * max(len(halls), 1)
    index = {hall: i for i, hall in enumerate(halls)}
    out = [f'<svg id="freezes" viewBox="0 0 {W} {h + 50}" role="img" aria-label="freeze timeline per hall">']
    out.append(_axis(x0, y0, w, h, duration, "seconds since the participants started", 0, "", yticks=0))
    for hall, i in index.items():
        out.append(f'<text x="{x0 - 4}" y="{y0 + i * row_h + row_h - 2}" class="t s" text-anchor="end">{_e(hall)}</text>')
    for r in rows:
        i = index.get(r["hall"])
        if i is None:
            continue
        for end, gap_ms in r.get("gaps", []):
            t1 = end - start
            t0 = t1 - gap_ms / 1000
            if t1 < 0 or t0 > duration:
                continue
            x = x0 + w * max(t0, 0) / duration
            width = max(w * (min(t1, duration) - max(t0, 0)) / duration, 1.5)
            cls = "bad" if gap_ms >= 500 else "warn"
            out.append(f'<rect x="{x:.1f}" y="{y0 + i * row_h + 1}" width="{width:.1f}" height="{row_h - 2}" class="{cls}">'
                       f'<title>{_e(r["id"])} at {_e(r["hall"])}: {gap_ms:.0f} ms</title></rect>')
    for f in faults:
        x = x0 + w * (f["time"] - start) / duration
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + h}" class="fault"/>'
                   f'<text x="{x + 3:.1f}" y="{y0 + 10}" class="t fault-label">{_e(f["kind"])} {_e(f.get("target", ""))}</text>')
    out.append("</svg>")
    return "".join(out)


def resources(cpu: dict, rss: dict) -> str:
    kinds = sorted(set(cpu) | set(rss))
    if not kinds:
        return "<p>No process figures.</p>"
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_fmt(cpu.get(k))}</td><td>{_fmt(rss.get(k))}</td>"
                   f'<td><svg viewBox="0 0 300 12" class="bar"><rect width="{min(cpu.get(k, 0) / 200 * 300, 300):.1f}" '
                   f'height="12" class="ok"/></svg></td></tr>' for k in kinds)
    return ('<table id="resources"><thead><tr><th>process kind</th><th>CPU % of one core</th><th>memory (MB, RSS)</th>'
            f"<th>CPU (scale: 2 cores)</th></tr></thead><tbody>{rows}</tbody></table>")


def render_html(r: dict) -> str:
    rows = r.get("per_participant", [])
    halls = [h["hall"] for h in r.get("per_hall", [])]
    start = r.get("started_at") or min((g[0] - g[1] / 1000 for p in rows for g in p.get("gaps", [])), default=time.time())
    duration = float(r.get("duration_s") or max((g[0] - start for p in rows for g in p.get("gaps", [])), default=1.0) or 1.0)
    summary = [
        ("participants", r.get("participants")), ("connected", r.get("participants_connected")),
        ("receiving", r.get("participants_receiving")), ("join ms p50 / p99", f"{_fmt(r.get('join_ms_p50'))} / {_fmt(r.get('join_ms_p99'))}"),
        ("first media ms p99", _fmt(r.get("first_media_ms_p99"))),
        ("delivered ratio min / p50", f"{_fmt(r.get('delivered_ratio_min'), 4)} / {_fmt(r.get('delivered_ratio_p50'), 4)}"),
        ("halls on air", f"{r.get('halls_on_air')} / {r.get('halls')}"), ("longest freeze at a hall (ms)", _fmt(r.get("max_hall_freeze_ms"))),
    ]
    faults = "".join(
        f"<tr><td>{_e(f['kind'])}</td><td>{_e(f.get('target', ''))}</td><td>{f['time'] - start:.1f} s</td>"
        f"<td>{_e(f.get('effect', {}).get('participants_frozen', ''))}</td>"
        f"<td>{_fmt(f.get('effect', {}).get('participant_max_freeze_ms'))}</td>"
        f"<td>{_fmt(f.get('effect', {}).get('hall_max_freeze_ms'))}</td></tr>" for f in r.get("faults", []))
    people = "".join(
        f"<tr><td>{_e(p['id'])}</td><td>{_e(p['hall'])}</td><td>{'yes' if p.get('connected') else _e(p.get('error') or 'no')}</td>"
        f"<td>{_fmt(p.get('join_ms'))}</td><td>{_fmt(p.get('first_media_ms'))}</td><td>{_fmt(p.get('delivered_ratio'), 4)}</td>"
        f"<td>{_fmt(p.get('max_freeze_ms'))}</td></tr>" for p in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diemcau load test: {_e(r.get('scenario'))}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #111; max-width: 960px; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.2rem; }} th, td {{ padding: .2rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }}
svg {{ width: 100%; height: auto; }} svg.bar {{ width: 300px; height: 12px; }}
.ax {{ stroke: #333; }} .grid {{ stroke: #eee; }} .t {{ font-size: 11px; fill: #333; }} .s {{ font-size: 9px; }}
.line {{ fill: none; stroke: #1f6feb; stroke-width: 2; }} .ok {{ fill: #2ea043; }} .warn {{ fill: #d29922; }} .bad {{ fill: #da3633; }}
.none {{ fill: #ccc; }} .fault {{ stroke: #8250df; stroke-width: 2; stroke-dasharray: 4 3; }} .fault-label {{ fill: #8250df; }}
details summary {{ cursor: pointer; }}
</style></head><body>
<h1>Load test <code>{_e(r.get('scenario'))}</code></h1>
<table id="summary">{''.join(f'<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in summary)}</table>
<h2>Faults</h2>
<table id="faults"><thead><tr><th>fault</th><th>target</th><th>at</th><th>participants frozen after</th>
<th>their longest freeze (ms)</th><th>halls' longest freeze (ms)</th></tr></thead><tbody>{faults}</tbody></table>
<h2>Join time (CDF)</h2>{join_cdf(rows)}
<h2>Delivered ratio per hall</h2>{delivered_per_hall(rows, halls)}
<h2>Freezes per hall over time</h2>
<p>Each bar is a gap between complete frames one participant saw; amber under 500 ms, red from 500 ms. Dashed lines: faults.</p>
{freeze_timeline(rows, halls, r.get('faults', []), start, duration)}
<h2>CPU and memory per kind of process</h2>{resources(r.get('cpu', {}), r.get('rss_mb', {}))}
<details><summary>Every participant ({len(rows)})</summary>
<table id="participants"><thead><tr><th>participant</th><th>hall</th><th>connected</th><th>join ms</th><th>first media ms</th>
<th>delivered</th><th>longest freeze ms</th></tr></thead><tbody>{people}</tbody></table></details>
</body></html>
"""
