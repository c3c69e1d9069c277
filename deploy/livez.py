"""Docker HEALTHCHECK: exit 0 when this container's process answers GET /livez with 200.

The web process serves /livez on PORT; the worker on WORKER_METRICS_PORT, so a worker container
sets HEALTHCHECK_PORT to that. Standard library only, one short request, no output unless it fails.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("HEALTHCHECK_PORT") or os.environ.get("PORT") or "8000"
    url = f"http://127.0.0.1:{port}/livez"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 - loopback http
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
