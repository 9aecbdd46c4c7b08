"""The control plane: registry, health, placement, failover decisions, API and console."""
