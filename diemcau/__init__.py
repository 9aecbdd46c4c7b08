"""diemcau: carries one live national programme to provincial halls over WebRTC.

This small package holds what the orchestrator, the relays and the hall daemons
all import: control messages, tokens, settings, the topology, and the CLI.
"""

__version__ = "0.1.0"
