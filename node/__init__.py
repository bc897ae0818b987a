"""The idnode service: core, transports, stores, roles, config, CLI, metrics and clients."""
