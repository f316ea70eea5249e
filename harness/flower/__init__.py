"""A Flower deployment as a backend of a fl-hil run (docs/flower.md): a SuperLink and N
SuperNodes on loopback, the user's Flower project (ServerApp, ClientApp), fault proxies on the
SuperNode-SuperLink links, node faults by signals, the ServerApp's rounds as fl-hil telemetry."""
