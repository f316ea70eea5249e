"""fl-hil host harness: boards, deploy, runs, analysis and reports."""
import os

# the checkout (or installed tree) that holds harness/ and firmware/ side by side
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE_DIR = os.path.join(REPO, "firmware")
