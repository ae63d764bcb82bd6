"""Print the alert webhooks a gateway POSTs (demo/gateway.toml points here).

    .venv/bin/python demo/webhook_receiver.py [--port 7200] [--for 600]

Binds 127.0.0.1 and exits by itself after --for seconds.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            note = json.loads(body)
            print(f"webhook: {note['alert']}: {note['previous']} -> {note['state']} ({note['reason']})")
            print("         rows:", json.dumps(note.get("rows", []))[:200], flush=True)
        except (ValueError, KeyError):
            print("webhook: unexpected body", body[:200], flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7200)
    parser.add_argument("--for", dest="seconds", type=float, default=600.0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/hook for {args.seconds:g} s",
          flush=True)
    threading.Timer(args.seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
