"""Keep secrets (the Wi-Fi password of a run config) out of logs, errors and reports."""

import json

MASK = "***"


def secrets_of(run_config):
    """The secret strings in a run config: today only `wifi.password`."""
    wifi = (run_config or {}).get("wifi") or {}
    pw = wifi.get("password") if isinstance(wifi, dict) else None
    return [pw] if isinstance(pw, str) and pw else []


def redact(text, secrets):
    """`text` with every occurrence of each secret replaced by a mask, also where it appears
    escaped inside a JSON string; longest first, so a secret that contains another goes whole."""
    if not isinstance(text, str):
        text = str(text)
    forms = set()
    for s in secrets or ():
        if s:
            forms.add(str(s))
            forms.add(json.dumps(str(s))[1:-1])
    for s in sorted(forms, key=len, reverse=True):
        text = text.replace(s, MASK)
    return text
