"""A host of its own on this machine: a network namespace joined to the root one by a veth pair.

Used to put a hall (or a relay) behind a provincial link that can be capped (tc tbf), made
lossy (nft numgen random) or cut, without touching any other traffic. This kernel has no
netem, so delay is not offered here. Needs root (CAP_NET_ADMIN); says so clearly otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess


class NetnsError(RuntimeError):
    pass


def available() -> str:
    """'' when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y iproute2 nftables)"
    return ""


def _run(*args: str) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetnsError(f"{' '.join(args)}: {proc.stderr.strip() or proc.returncode}")


class Netns:
    """Namespace `name` with address `ns_addr`, reached from the root namespace at `host_addr`."""

    def __init__(self, name: str, host_addr: str, ns_addr: str, prefix: int = 30) -> None:
        self.name = name
        self.host_addr, self.ns_addr, self.prefix = host_addr, ns_addr, prefix
        short = name[-9:]
        self.host_if, self.ns_if = f"vh-{short}", f"vn-{short}"  # at most 15 characters
        self.capped_kbit = 0
        self.loss_pct = 0

    def create(self) -> Netns:
        why = available()
        if why:
            raise NetnsError(why)
        self.destroy()  # a previous run killed before its clean-up
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _run("ip", "link", "set", self.ns_if, "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_addr}/{self.prefix}", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            self.exec_run("ip", "addr", "add", f"{self.ns_addr}/{self.prefix}", "dev", self.ns_if)
            self.exec_run("ip", "link", "set", self.ns_if, "up")
            self.exec_run("ip", "link", "set", "lo", "up")
        except NetnsError:
            self.destroy()
            raise
        return self

    def exec_run(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.name, *args)

    def popen(self, args: list[str], **kw) -> subprocess.Popen:
        """Start a process inside the namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kw)

    def cap(self, kbit: int, burst_bytes: int = 8000, latency_ms: int = 100) -> None:
        """Cap what reaches the namespace (the root side's egress) with a token bucket."""
        _run("tc", "qdisc", "replace", "dev", self.host_if, "root", "tbf", "rate", f"{kbit}kbit",
             "burst", str(burst_bytes), "latency", f"{latency_ms}ms")
        self.capped_kbit = kbit

    def uncap(self) -> None:
        if self.capped_kbit:
            _run("tc", "qdisc", "del", "dev", self.host_if, "root")
            self.capped_kbit = 0

    def loss(self, pct: int) -> None:
        """Drop `pct` % of the packets arriving in the namespace, at random (nft numgen)."""
        self.clear_loss()
        if pct <= 0:
            return
        rules = (f"table inet diemcau_loss {{\n chain input {{\n type filter hook input priority 0; policy accept;\n"
                 f" iifname \"{self.ns_if}\" numgen random mod 100 < {int(pct)} drop\n }}\n}}\n")
        proc = subprocess.run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], input=rules,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise NetnsError(f"nft: {proc.stderr.strip()}")
        self.loss_pct = pct

    def clear_loss(self) -> None:
        if self.loss_pct:
            self.exec_run("nft", "delete", "table", "inet", "diemcau_loss")
            self.loss_pct = 0

    def destroy(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        self.capped_kbit = self.loss_pct = 0

    def __enter__(self) -> Netns:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()
