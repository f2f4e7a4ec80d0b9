"""The `hcp-runbooks` command (the top layer: it may use flows, deployments and, for the demo
and `sim`, the simulator)."""
