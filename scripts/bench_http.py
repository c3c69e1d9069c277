"""The API path through HTTP: Herald's web process as production runs it (gunicorn with
config/gunicorn.py, gthread workers, DEBUG off), a producer made with `manage.py create_producer`,
and clients posting over keep-alive connections with its API key.

Measured per accepted message: CPU of the gunicorn processes (master and workers, from /proc, as
the difference between readings before and after the window) and AWS calls by operation (the web
processes' own `herald_aws_calls_total`, read from /metrics before and after); per request,
latency. Twice: single messages (POST /api/v1/messages) and batches (POST
/api/v1/messages/batch, `{"messages": [...]}`, one result per item); where the batch endpoint is
missing (404 or 405), the batch part says so and the scenario goes on.

Nothing delivers these messages: a plain SQS consumer in this process deletes what the API
queues, so the queue (whose SendMessage slows as it grows on the stand-in) stays short.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import boto3
from bench_delivery import padded_body
from bench_measure import percentile, process_tree_cpu_seconds, tree_cpu_delta
from bench_setup import LOGS_DIR, PYTHON, ROOT, free_port, manage, standin, stop_process

API_PATH = "/api/v1/messages"
BATCH_PATH = "/api/v1/messages/batch"
# Not the API's per-message calls: /metrics reads the queue depths itself, and a queue's URL is
# looked up once per process (by /metrics's probe client, or before a worker's first send).
METRICS_OWN_CALLS = frozenset({"sqs.GetQueueAttributes", "sqs.GetQueueUrl"})
WARM_UP_REQUESTS_PER_WORKER = 10
_CALLS = re.compile(r"^herald_aws_calls_total\{([^}]*)\}\s+([0-9.eE+-]+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def aws_calls_from_metrics(text: str) -> Counter[str]:
    calls: Counter[str] = Counter()
    for labels, value in _CALLS.findall(text):
        found = dict(_LABEL.findall(labels))
        calls[f"{found.get('service')}.{found.get('operation')}"] += int(float(value))
    return calls


class WebServer:
    """gunicorn serving Herald on a loopback port."""

    def __init__(self, env: dict[str, str], options: Any) -> None:
        self.port = free_port()
        self.env = {
            **env,
            "PORT": str(self.port),
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "WEB_CONCURRENCY": str(options.web_concurrency),
            "WEB_THREADS": str(options.web_threads),
            # Room for the batches: the limiter still takes its share in chunks of 10 (one
            # UpdateItem per 10 messages), as with the defaults.
            "INTAKE_RATE": "1000",
            "INTAKE_BURST": "2000",
            "LOG_LEVEL": "WARNING",
        }
        self.log = (LOGS_DIR / "gunicorn-http.log").open("wb")
        # As the Procfile's `web` and `make run` start it; bound to loopback like `make run`.
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "--config",
                "config/gunicorn.py",
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/livez", timeout=2):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.3)
        raise SystemExit("gunicorn did not answer /livez within 60 s")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as answer:  # noqa: S310
            return answer.read().decode()

    def cpu(self) -> dict[int, float]:
        return process_tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process, 40)
        self.log.close()


class QueueDrain:
    """Deletes whatever reaches Herald's queue (not Herald; not measured)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.sqs = boto3.session.Session().client(
            "sqs", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"]
        )
        self.url = self.sqs.get_queue_url(QueueName=env["SQS_QUEUE_NAME"])["QueueUrl"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-drain", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", [])
                if messages:
                    self.sqs.delete_message_batch(
                        QueueUrl=self.url,
                        Entries=[
                            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                            for n, m in enumerate(messages)
                        ],
                    )
            except Exception:
                time.sleep(0.5)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def message_payload(vendor_url: str, index: int, body_bytes: int) -> dict[str, Any]:
    return {
        "target_url": f"{vendor_url}/hooks/{index}",
        "method": "POST",
        "headers": {"X-Bench": "http"},
        "body": json.loads(padded_body({"event": "bench", "n": index}, body_bytes)),
        "metadata": {"bench": "http"},
    }


class Client:
    """One keep-alive connection to the API."""

    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        self.connection.request(
            "POST", path, body=body, headers={**self.headers, **(headers or {})}
        )
        answer = self.connection.getresponse()
        data = answer.read()
        try:
            return answer.status, json.loads(data) if data else None
        except ValueError:
            return answer.status, None

    def close(self) -> None:
        self.connection.close()


def accepted_in_batch(status: int, answer: Any) -> int:
    """Items the batch endpoint accepted: results without an error (the format is the endpoint's
    own; a list of results, or one under "results")."""
    if status >= 300 or answer is None:
        return 0
    results = answer if isinstance(answer, list) else answer.get("results", [])
    return sum(1 for item in results if isinstance(item, dict) and "error" not in item)


def run_http(options: Any, env: dict[str, str], vendor_url: str) -> dict[str, Any]:
    with standin(env, "http"):
        key = manage(env, "create_producer", "bench-http", output=True).strip().splitlines()[-1]
        server = WebServer(env, options)
        drain = QueueDrain(env)
        try:
            warm_up(server, key, options, vendor_url)
            single = _phase(server, key, options, vendor_url, batch_size=None, prefix="single")
            probe = Client(server.port, key)
            status, _ = probe.post(
                BATCH_PATH,
                {"messages": [message_payload(vendor_url, 0, options.body_bytes)]},
            )
            probe.close()
            if status in (404, 405):
                batch: dict[str, Any] = {"available": False, "status": status}
            else:
                batch = _phase(
                    server,
                    key,
                    options,
                    vendor_url,
                    batch_size=options.batch_size,
                    prefix="batch",
                )
        finally:
            drain.close()
            server.stop()
    return {
        "scenario": "http",
        "title": "API through HTTP (gunicorn)",
        "kind": "http",
        "web": {"workers": options.web_concurrency, "threads": options.web_threads},
        "body_bytes": options.body_bytes,
        "single": single,
        "batch": batch,
    }


def warm_up(server: WebServer, key: str, options: Any, vendor_url: str) -> None:
    """Submissions before the measured window, each on a new connection so that every gunicorn
    worker gets some: a worker imports much of Django and DRF on its first requests, which a
    long-running server has long done."""
    for n in range(WARM_UP_REQUESTS_PER_WORKER * options.web_concurrency):
        client = Client(server.port, key)
        client.post(API_PATH, message_payload(vendor_url, n, options.body_bytes))
        client.close()


def _phase(
    server: WebServer,
    key: str,
    options: Any,
    vendor_url: str,
    *,
    batch_size: int | None,
    prefix: str,
) -> dict[str, Any]:
    """Submit `options.messages` messages, one per request or in batches, from
    `options.submitters` threads; the figures of the window."""
    total = options.messages
    if batch_size:
        groups = [list(range(i, min(i + batch_size, total))) for i in range(0, total, batch_size)]
    else:
        groups = [[i] for i in range(total)]
    jobs = iter(groups)
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    accepted = [0]

    def client_thread() -> None:
        client = Client(server.port, key)
        try:
            while True:
                with lock:
                    group = next(jobs, None)
                if group is None:
                    return
                started = time.perf_counter()
                if batch_size:
                    items = [
                        {
                            **message_payload(vendor_url, i, options.body_bytes),
                            "idempotency_key": f"{prefix}-{i}",
                        }
                        for i in group
                    ]
                    status, answer = client.post(BATCH_PATH, {"messages": items})
                    count = accepted_in_batch(status, answer)
                else:
                    (i,) = group
                    status, _ = client.post(
                        API_PATH,
                        message_payload(vendor_url, i, options.body_bytes),
                        {"Idempotency-Key": f"{prefix}-{i}"},
                    )
                    count = 1 if status in (200, 202) else 0
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed * 1000)
                    statuses[status] += 1
                    accepted[0] += count
        finally:
            client.close()

    calls_before = aws_calls_from_metrics(server.get("/metrics"))
    cpu_before = server.cpu()
    began = time.time()
    threads = [threading.Thread(target=client_thread) for _ in range(options.submitters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = time.time()
    cpu = tree_cpu_delta(cpu_before, server.cpu())
    calls_after = aws_calls_from_metrics(server.get("/metrics"))
    calls = {
        op: n - calls_before.get(op, 0)
        for op, n in sorted(calls_after.items())
        if n - calls_before.get(op, 0) and op not in METRICS_OWN_CALLS
    }
    done = accepted[0]
    per = 1 / done if done else 0.0
    return {
        "available": True,
        "requests": len(groups),
        "messages_per_request": batch_size or 1,
        "accepted": done,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "window_seconds": ended - began,
        "accepted_per_second": done / (ended - began) if ended > began else None,
        "cpu_seconds": cpu,
        "cpu_per_1000_accepted": cpu * 1000 * per,
        "aws_calls_per_accepted_message": {op: n * per for op, n in calls.items()},
        "aws_calls_per_accepted_message_total": sum(calls.values()) * per,
        "latency_ms": {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)},
    }
