"""fl-hil host harness: boards, deploy, runs, analysis and reports."""
