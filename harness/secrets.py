"""Keep secrets (the Wi-Fi password of a run config) out of logs, errors and reports."""

MASK = "***"


def secrets_of(run_config):
    """The secret strings in a run config: today only `wifi.password`."""
    wifi = (run_config or {}).get("wifi") or {}
    pw = wifi.get("password") if isinstance(wifi, dict) else None
    return [pw] if isinstance(pw, str) and pw else []


def redact(text, secrets):
    """`text` with every occurrence of each secret replaced by a mask."""
    if not isinstance(text, str):
        text = str(text)
    for s in secrets or ():
        if s:
            text = text.replace(s, MASK)
    return text
