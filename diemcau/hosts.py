"""Hosts of their own on this machine: one network namespace per host, all on a shared bridge.

The `hosts` profile runs Redis, each orchestrator, each relay, the studio and groups of halls
each in its own namespace with its own address, as on the day they run on different machines.
The root namespace sits on the bridge too (the first address): the operator's seat, from which
the drills call the API and watch. Links between hosts can then be cut (packets silently
dropped both ways, no reset: nft in the host's namespace), capped (tc tbf on the bridge port
towards the host) or made lossy (nft numgen). This kernel has no netem, so no delay.

Needs root (CAP_NET_ADMIN); `available()` says why not otherwise.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass, field

from .netns import NetnsError, _run, available

__all__ = ["Host", "HostNet", "NetnsError", "available"]


@dataclass
class Host:
    name: str
    address: str
    ns: str  # network namespace
    port_if: str  # its bridge port in the root namespace (veth end)
    cut_from: set[str] = field(default_factory=set)  # addresses whose packets are dropped
    capped_kbit: int = 0
    loss_pct: int = 0

    def argv(self, args: list[str]) -> list[str]:
        """A command line that runs `args` on this host (the process is the command itself: ip
        execs it after entering the namespace, so signals and PDEATHSIG reach it unchanged)."""
        return ["ip", "netns", "exec", self.ns, *args]


class HostNet:
    """A bridge in the root namespace and one namespace per host, addresses from `network`."""

    def __init__(self, network: str, tag: str = "dc") -> None:
        try:
            self.net = ipaddress.ip_network(network)
        except ValueError as exc:
            raise NetnsError(f"network {network!r}: {exc}") from None
        if self.net.version != 4 or self.net.num_addresses < 8:
            raise NetnsError(f"network {network!r}: an IPv4 subnet of at least 8 addresses (e.g. 10.88.0.0/24)")
        if not tag.isalnum() or len(tag) > 4:
            raise NetnsError(f"tag {tag!r}: at most 4 letters or digits")
        self.tag = tag
        self.bridge = f"{tag}br0"
        self._free = iter(self.net.hosts())
        self.address = str(next(self._free))  # the root namespace's (the operator's seat)
        self.hosts: dict[str, Host] = {}
        self._up = False

    # -- building ---------------------------------------------------------------------------

    def create(self) -> HostNet:
        why = available()
        if why:
            raise NetnsError(f"the hosts profile runs each part in a network namespace: {why}")
        self.destroy()  # what a previous run killed before its clean-up left behind
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._up = True
        _run("ip", "addr", "add", f"{self.address}/{self.net.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Host:
        """A new host on the bridge with the next free address."""
        if name in self.hosts:
            return self.hosts[name]
        try:
            address = str(next(self._free))
        except StopIteration:
            raise NetnsError(f"network {self.net} has no address left for host {name}") from None
        i = len(self.hosts)
        host = Host(name=name, address=address, ns=f"{self.tag}h-{name}"[:32], port_if=f"{self.tag}p{i}")
        inside = f"{self.tag}i{i}"
        _run("ip", "netns", "add", host.ns)
        self.hosts[name] = host
        _run("ip", "link", "add", host.port_if, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", host.ns)
        _run("ip", "link", "set", host.port_if, "master", self.bridge)
        _run("ip", "link", "set", host.port_if, "up")
        ns = ("ip", "netns", "exec", host.ns)
        _run(*ns, "ip", "link", "set", inside, "name", "eth0")
        _run(*ns, "ip", "addr", "add", f"{address}/{self.net.prefixlen}", "dev", "eth0")
        _run(*ns, "ip", "link", "set", "eth0", "up")
        _run(*ns, "ip", "link", "set", "lo", "up")
        return host

    def destroy(self) -> None:
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True)
            subprocess.run(["ip", "link", "del", host.port_if], capture_output=True)
        # leftovers of a killed run: every namespace and port with our tag
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        for ns in listed:
            if ns.startswith(f"{self.tag}h-"):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.hosts.clear()
        self._up = False

    def __enter__(self) -> HostNet:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()

    # -- faults -----------------------------------------------------------------------------

    def _apply(self, host: Host) -> None:
        """Write the host's filter: drops from and to the cut addresses, random loss on arrival."""
        ns = ("ip", "netns", "exec", host.ns)
        subprocess.run([*ns, "nft", "delete", "table", "inet", "diemcau_link"], capture_output=True)
        if not host.cut_from and not host.loss_pct:
            return
        cut = ", ".join(sorted(host.cut_from))
        lines = ["table inet diemcau_link {",
                 " chain input { type filter hook input priority 0; policy accept;"]
        if cut:
            lines.append(f"  ip saddr {{ {cut} }} drop")
        if host.loss_pct:
            lines.append(f"  iifname \"eth0\" numgen random mod 100 < {host.loss_pct} drop")
        lines.append(" }")
        lines.append(" chain output { type filter hook output priority 0; policy accept;")
        if cut:
            lines.append(f"  ip daddr {{ {cut} }} drop")
        lines.append(" }")
        lines.append("}")
        proc = subprocess.run([*ns, "nft", "-f", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True)
        if proc.returncode != 0:
            raise NetnsError(f"nft on {host.name}: {proc.stderr.strip()}")

    def cut(self, a: str, b: str) -> None:
        """Cut the link between hosts a and b: every packet between them is dropped, both ways,
        silently (no reset, no ICMP): as a failed provincial link looks from both ends."""
        ha, hb = self.hosts[a], self.hosts[b]
        ha.cut_from.add(hb.address)
        hb.cut_from.add(ha.address)
        self._apply(ha)
        self._apply(hb)

    def heal(self, a: str, b: str) -> None:
        ha, hb = self.hosts[a], self.hosts[b]
        ha.cut_from.discard(hb.address)
        hb.cut_from.discard(ha.address)
        self._apply(ha)
        self._apply(hb)

    def heal_all(self) -> None:
        for host in self.hosts.values():
            if host.cut_from:
                host.cut_from.clear()
                self._apply(host)

    def loss(self, name: str, pct: int) -> None:
        """Drop `pct` % of the packets arriving at the host, at random."""
        if not 0 <= pct <= 100:
            raise ValueError(f"loss {pct}: a percentage 0..100")
        host = self.hosts[name]
        host.loss_pct = int(pct)
        self._apply(host)

    def cap(self, name: str, kbit: int, burst_bytes: int = 16000, latency_ms: int = 100) -> None:
        """Cap what reaches the host (its bridge port's egress) with a token bucket; 0 lifts it."""
        host = self.hosts[name]
        if kbit <= 0:
            if host.capped_kbit:
                _run("tc", "qdisc", "del", "dev", host.port_if, "root")
                host.capped_kbit = 0
            return
        _run("tc", "qdisc", "replace", "dev", host.port_if, "root", "tbf", "rate", f"{kbit}kbit",
             "burst", str(burst_bytes), "latency", f"{latency_ms}ms")
        host.capped_kbit = kbit
