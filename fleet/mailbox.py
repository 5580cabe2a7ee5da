"""A local SMTP receiver for the fleet: every message Gantry's notifiers send is stored as
<dir>/<ns>.eml, so the demo and the tests can read the alerts that were really sent.

    python fleet/mailbox.py 127.0.0.1 10025 /var/lib/gantry-local/mail
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=DeprecationWarning)
import asyncore  # noqa: E402  (stdlib on Python 3.11; the fleet needs no extra package for a catcher)
import smtpd  # noqa: E402


class Mailbox(smtpd.SMTPServer):
    def __init__(self, addr: tuple[str, int], folder: Path) -> None:
        super().__init__(addr, None, decode_data=False)
        self.folder = folder

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        path = self.folder / f"{time.time_ns()}.eml"
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        print(f"stored mail from {mailfrom} to {rcpttos} as {path.name}", flush=True)


def main() -> None:
    host, port, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    folder.mkdir(parents=True, exist_ok=True)
    Mailbox((host, port), folder)
    asyncore.loop()


if __name__ == "__main__":
    main()
