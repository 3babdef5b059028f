"""A failing backend for the guard's end-to-end tests: a WSGI app served by the same gunicorn as
httpbin (e2e/src/gateway/httpbin.rs starts it with the same access log and its request-id marker),
that answers a configured share of requests with 500, deterministically, and can add latency.

Configuration (environment, at start):
  FAULTY_ERROR_SHARE   share of requests answered 500, 0-1 (default 0)
  FAULTY_LATENCY_MS    milliseconds added to every counted request (default 0)
  FAULTY_CONTROL       a JSON file {"generation": N, "error_share": S, "latency_ms": L} re-read
                       (every 20 ms, by a thread) while running; once a new generation is in
                       effect the app writes N into FAULTY_CONTROL + ".applied"

Which requests fail: requests are counted (1, 2, ...) in the order they arrive, under a lock;
request n fails when floor(n * S) > floor((n - 1) * S), so over any run of requests the share
that failed is S to within one request (S = 0.2: every 5th). A change of S applies from the next
request on; the count goes on.

Not counted, never failed or delayed: GET /status/<code> answers <code> (what the harness probes
for readiness, as it does httpbin). Every other path answers 200 with a small JSON body, or 500.
The control file is not reachable over HTTP.
"""

import json
import os
import sys
import threading
import time

_MILLION = 1_000_000
_lock = threading.Lock()
_count = 0
_config = {
    "generation": 0,
    "error_share": float(os.environ.get("FAULTY_ERROR_SHARE", "0")),
    "latency_ms": float(os.environ.get("FAULTY_LATENCY_MS", "0")),
}
_control = os.environ.get("FAULTY_CONTROL")


def _valid(share, latency_ms):
    return 0.0 <= share <= 1.0 and 0.0 <= latency_ms <= 60_000.0


if not _valid(_config["error_share"], _config["latency_ms"]):
    sys.exit(f"faulty: invalid configuration {_config}")


def _watch():
    """Re-reads the control file when it changes (the harness replaces it by a rename)."""
    seen = None
    while True:
        try:
            st = os.stat(_control)
            key = (st.st_mtime_ns, st.st_ino, st.st_size)
            if key != seen:
                seen = key
                with open(_control) as f:
                    new = json.load(f)
                share = float(new["error_share"])
                latency = float(new["latency_ms"])
                generation = int(new["generation"])
                if _valid(share, latency):
                    with _lock:
                        _config.update(
                            generation=generation, error_share=share, latency_ms=latency
                        )
                    applied = _control + ".applied"
                    with open(applied + ".tmp", "w") as f:
                        f.write(str(generation))
                    os.replace(applied + ".tmp", applied)
                    print(
                        f"faulty: generation {generation}: error_share {share}, latency_ms {latency}",
                        file=sys.stderr,
                    )
                else:
                    print(f"faulty: ignored invalid control {new}", file=sys.stderr)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"faulty: cannot read {_control}: {e}", file=sys.stderr)
        time.sleep(0.02)


if _control:
    threading.Thread(target=_watch, name="faulty-control", daemon=True).start()


def app(environ, start_response):
    global _count
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/status/"):
        code = path[len("/status/"):]
        status = f"{code} Probe" if code.isdigit() and len(code) == 3 else "400 Bad Request"
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]
    with _lock:
        _count += 1
        n = _count
        share = _config["error_share"]
        latency_ms = _config["latency_ms"]
    if latency_ms > 0:
        time.sleep(latency_ms / 1000.0)
    # In millionths, so that the count is exact (no floating-point rounding at multiples).
    k = round(share * _MILLION)
    if (n * k) // _MILLION > ((n - 1) * k) // _MILLION:
        # The same text for every injected fault, so that clients can count them as one cause.
        body = f"injected fault (error share {share})\n".encode()
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]
    body = json.dumps({"app": "faulty", "path": path, "request": n}).encode() + b"\n"
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
