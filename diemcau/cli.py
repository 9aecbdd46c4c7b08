"""The `diemcau` command: run any part of the system, the demo, or a benchmark."""

from __future__ import annotations

import argparse
import os
import sys


def _orchestrator(args: argparse.Namespace) -> None:
    from aiohttp import web

    from diemcau.service import run, setup_logging
    from diemcau.settings import from_env
    from orchestrator.app import make_app
    from orchestrator.settings import OrchestratorSettings

    setup_logging(f"orch[{args.instance or 'orch-1'}]")
    settings = from_env(OrchestratorSettings, "DIEMCAU_ORCH_", host=args.host, port=args.port,
                        instance=args.instance, profile=args.profile)
    app = make_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=5)

    from .tls import server_context

    ssl_ctx = server_context(settings.tls_cert, settings.tls_key)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_ctx).start()

    run(start, runner.cleanup)


def _relay(args: argparse.Namespace) -> None:
    from aiohttp import web

    from diemcau.service import run, setup_logging
    from diemcau.settings import from_env
    from relay.agent import RelayAgent
    from relay.app import CORE_KEY, make_app
    from relay.settings import RelaySettings

    settings = from_env(RelaySettings, "DIEMCAU_RELAY_", id=args.id, role=args.role, region=args.region,
                        province=args.province,
                        host=args.host, port=args.port)
    setup_logging(f"relay[{settings.id}]")
    app = make_app(settings)
    runner = web.AppRunner(app)
    agent: list[RelayAgent] = []

    from .tls import scheme, server_context

    ssl_ctx = server_context(settings.tls_cert, settings.tls_key)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_ctx)
        await site.start()
        url = settings.public_url or f"{scheme(ssl_ctx is not None)}://{settings.host}:{settings.port}"
        if settings.orchestrator_url:
            a = RelayAgent(app[CORE_KEY], url)
            a.start()
            agent.append(a)

    async def stop() -> None:
        for a in agent:
            await a.stop()
        await runner.cleanup()

    run(start, stop)


def _edge(args: argparse.Namespace) -> None:
    from diemcau.service import run, setup_logging
    from diemcau.settings import from_env
    from edge_node.daemon import HallDaemon
    from edge_node.settings import EdgeSettings

    halls = [h for h in (args.hall or "").split(",") if h]
    if len(halls) > 1:
        _fork_edges(halls)
        return
    settings = from_env(EdgeSettings, "DIEMCAU_EDGE_", hall=halls[0] if halls else None)
    if not settings.credential and os.environ.get("DIEMCAU_NODE_KEY_FILE"):
        settings.credential = _credential_for(settings.hall)
    setup_logging(f"hall[{settings.hall}]")
    daemon: list[HallDaemon] = []

    async def start() -> None:
        d = HallDaemon(settings)
        await d.start_async()
        daemon.append(d)

    async def stop() -> None:
        for d in daemon:
            await d.stop()

    run(start, stop)


def _credential_for(node: str) -> str:
    from pathlib import Path

    from diemcau.tokens import node_credential

    key = bytes.fromhex(Path(os.environ["DIEMCAU_NODE_KEY_FILE"]).read_text().strip())
    return node_credential(key, node)


def _fork_edges(halls: list[str]) -> None:
    """Run one hall daemon per hall, each its own OS process forked from this pre-imported one.

    Forking after the imports saves each daemon ~0.7 s of CPU at start-up (70 halls: ~50 s on
    two cores), which matters when a whole deployment starts on one machine.
    """
    import signal
    import time

    import edge_node.daemon  # noqa: F401  (import once, before forking)
    from diemcau.service import die_with_parent

    children: dict[int, str] = {}
    for hall in halls:
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            os.environ["DIEMCAU_EDGE_HALL"] = hall
            try:
                _edge(argparse.Namespace(hall=hall))
            finally:
                os._exit(0)
        children[pid] = hall

    def forward(signum, frame) -> None:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while children:
        try:
            pid, _ = os.wait()
            children.pop(pid, None)
        except ChildProcessError:
            break
        except InterruptedError:
            time.sleep(0.01)


def _studio(args: argparse.Namespace) -> None:
    import asyncio
    import json
    import time
    from pathlib import Path

    from diemcau.service import run, setup_logging
    from relay.ice import restrict_ice_addresses
    from relay.studio import Studio

    setup_logging("studio")
    urls = [u for u in args.whip.split(",") if u]
    tokens = [t for t in (args.token or os.environ.get("DIEMCAU_STUDIO_TOKEN", "")).split(",") if t]
    if args.token_file:
        tokens = [t.strip() for t in Path(args.token_file).read_text().splitlines() if t.strip()]
    if len(tokens) == 1:
        tokens = tokens * len(urls)
    if not tokens or len(tokens) != len(urls):
        sys.exit("studio: one publish token per WHIP URL is required (--token, --token-file or DIEMCAU_STUDIO_TOKEN)")
    restrict_ice_addresses([a for a in (args.ice_addresses or "").split(",") if a])
    studio = Studio(urls, tokens, args.width, args.height, args.fps, args.bitrate, role=args.role,
                    impair_file=args.impair_file or "", source=args.picture)
    tasks: list[asyncio.Task] = []

    async def write_stats() -> None:
        while True:
            if args.stats_file:
                tmp = Path(args.stats_file + ".tmp")
                tmp.write_text(json.dumps({
                    "frames_sent": studio.frames_sent, "audio_packets_sent": studio.audio_packets_sent,
                    "frames_dropped": studio.frames_dropped,
                    "started_at": studio.started_at, "fps": args.fps, "at": time.time(),
                    "publishes": studio.publishes,
                }))
                tmp.replace(args.stats_file)
            await asyncio.sleep(0.5)

    async def start() -> None:
        tasks.append(asyncio.ensure_future(studio.run()))
        tasks.append(asyncio.ensure_future(write_stats()))

    async def stop() -> None:
        studio.stop()
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run(start, stop)


def _demo(args: argparse.Namespace) -> None:
    from diemcau.deploy import run_demo

    sys.exit(run_demo(args))


def _drill(args: argparse.Namespace) -> None:
    from diemcau.drill import run_drill

    sys.exit(run_drill(args))


def _bench(args: argparse.Namespace, rest: list[str]) -> None:
    if args.what == "fanout":
        from relay.bench import main as fanout

        sys.exit(fanout(rest))
    if args.what == "ladder":
        from relay.ladderbench import main as ladder

        sys.exit(ladder(rest))
    if args.what == "control":
        from orchestrator.bench import main as control

        sys.exit(control(rest))
    sys.exit(f"unknown benchmark {args.what}")


def _loadtest(args: argparse.Namespace) -> None:
    from loadtest.run import run_loadtest

    sys.exit(run_loadtest(args))


def _check(args: argparse.Namespace) -> None:
    from diemcau.topology import load_profile, load_topology
    from relay.compat import check_aiortc

    check_aiortc()
    topo = load_topology(args.topology)
    prof = load_profile(args.profile)
    print(f"aiortc internals ok; topology: {len(topo.halls)} halls in {len(topo.provinces())} provinces; "
          f"profile {prof.deployment.name}: {len(prof.relays)} relays")


def _fuzz(args: argparse.Namespace) -> None:
    from .fuzz import main as fuzz_main

    raise SystemExit(fuzz_main(args))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="diemcau", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    o = sub.add_parser("orchestrator", help="run the control plane")
    o.add_argument("--host")
    o.add_argument("--port", type=int)
    o.add_argument("--instance")
    o.add_argument("--profile")
    o.set_defaults(fn=_orchestrator)

    r = sub.add_parser("relay", help="run a relay (origin or regional)")
    r.add_argument("--id")
    r.add_argument("--role", choices=["origin", "regional", "provincial"])
    r.add_argument("--province", help="a provincial relay's province (as the topology spells it)")
    r.add_argument("--region", choices=["north", "central", "south"])
    r.add_argument("--host")
    r.add_argument("--port", type=int)
    r.set_defaults(fn=_relay)

    e = sub.add_parser("edge", help="run the hall daemon (several halls: one process each)")
    e.add_argument("--hall", help="hall id, or a comma-separated list")
    e.set_defaults(fn=_edge)

    s = sub.add_parser("studio", help="publish the synthetic test programme by WHIP")
    s.add_argument("--whip", required=True, help="WHIP endpoint URL (several: comma-separated, same frames to each)")
    s.add_argument("--role", choices=["primary", "backup"], default="primary",
                   help="which studio feed this encoder is at the origins")
    s.add_argument("--token")
    s.add_argument("--token-file")
    s.add_argument("--width", type=int, default=640)
    s.add_argument("--height", type=int, default=360)
    s.add_argument("--fps", type=int, default=30)
    s.add_argument("--bitrate", type=int, default=800_000)
    s.add_argument("--ice-addresses", default="127.0.0.1")
    s.add_argument("--picture", choices=["test", "busy"], default="test",
                   help="busy: a band of fresh noise in every frame, so the encoder spends its whole bitrate")
    s.add_argument("--stats-file")
    s.add_argument("--impair-file", help="test source faults: the file's content (freeze, black, silent, joined "
                                        "by +; empty: none) is applied within 50 ms of a change")
    s.set_defaults(fn=_studio)

    d = sub.add_parser("demo", help="run the whole system on this machine")
    d.add_argument("--edges", type=int, default=70, help="hall daemons to start (default 70)")
    d.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    d.add_argument("--report", help="write a JSON report here")
    d.add_argument("--profile", default="local")
    d.add_argument("--port", type=int, default=8700, help="orchestrator HTTP port (0: any free port)")
    d.add_argument("--fps", type=int, default=30)
    d.add_argument("--width", type=int, default=640)
    d.add_argument("--height", type=int, default=360)
    d.add_argument("--keep", action="store_true", help="keep the logs and work directory")
    d.add_argument("--no-backup-studio", action="store_true", help="run only the primary studio feed")
    d.add_argument("--tls", action="store_true", help="HTTPS/WSS everywhere with a private CA made for this run")
    d.set_defaults(fn=_demo)

    dr = sub.add_parser("drill", help="inject a fault into a fresh deployment and measure every hall")
    dr.add_argument("kind", choices=["kill-relay", "kill-origin", "kill-source", "kill-redis",
                                         "kill-orchestrator-leader", "drain-relay", "qoe",
                                         "partition-leader", "partition-hall", "partition-relay"],
                    help="partition-*: a link between two hosts cut (packets dropped both ways), held, healed "
                         "(the hosts profile: needs root)")
    dr.add_argument("--report")
    dr.add_argument("--edges", type=int, default=70)
    dr.add_argument("--profile", default="local")
    dr.add_argument("--fps", type=int, help="programme frame rate (default 30; qoe: 15, every hall decodes)")
    dr.add_argument("--width", type=int, help="default 640 (qoe: 320)")
    dr.add_argument("--height", type=int, help="default 360 (qoe: 180)")
    dr.add_argument("--ready-timeout", type=float, default=120.0)
    dr.add_argument("--cut-seconds", type=float, default=10.0, help="partition-*: how long the link stays cut")
    dr.add_argument("--hitless", action="store_true",
                    help="every hall in hitless mode: both paths carry the programme, merged frame by frame")
    dr.set_defaults(fn=_drill)

    b = sub.add_parser("bench", help="benchmarks: `diemcau bench fanout --subscribers N --seconds S --json`, `diemcau bench ladder --seconds S`, "
                       "`diemcau bench control --halls N --seconds S --json`",
                       add_help=False)
    b.add_argument("what", choices=["fanout", "ladder", "control"])
    b.set_defaults(fn=None)

    lt = sub.add_parser("loadtest", help="participants as real WebRTC peers at the halls, with faults")
    lt.add_argument("scenario", help="a name in loadtest/scenarios/ (smoke, summit-1000) or a TOML path")
    lt.add_argument("--report", required=True)
    lt.add_argument("--profile", default="local",
                    help="hosts: every part, and each worker, on a host of its own (network namespaces; root); "
                         "needed by cap / loss / cut faults")
    lt.add_argument("--participants", type=int, default=0, help="override the scenario's participant count")
    lt.add_argument("--duration", type=float, default=0, help="override the scenario's duration (s); faults and "
                    "actions past the end are dropped")
    lt.add_argument("--worker-via", default="",
                    help="run each worker through this command, e.g. \"ssh lt{i}.example\" ({i}: 1..workers); "
                         "it speaks JSON on stdin/stdout, and needs diemcau installed there")
    lt.set_defaults(fn=_loadtest)

    fz = sub.add_parser("fuzz", help="malformed input at every door: parsers, HTTP, control channel, media ports")
    fz.add_argument("--budget", type=int, default=10_000, help="inputs to try (default 10000)")
    fz.add_argument("--seed", type=int, default=1)
    fz.add_argument("--report", default="", help="write the JSON report here")
    fz.set_defaults(fn=_fuzz)

    c = sub.add_parser("check", help="check aiortc internals, topology and profile")
    c.add_argument("--topology")
    c.add_argument("--profile", default="local")
    c.set_defaults(fn=_check)

    args, rest = p.parse_known_args(argv)
    if args.cmd == "bench":
        _bench(args, rest)
        return
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    args.fn(args)


if __name__ == "__main__":
    main()
