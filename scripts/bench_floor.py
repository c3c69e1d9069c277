"""The floor: the fewest calls of Herald's message lifecycle, made by a plain script.

No Django and no Herald code: boto3 and http.client only. Per message, as Herald does on its happy
path: a conditional PutItem (the message, PENDING), SendMessage (its id), a guarded UpdateItem
(PENDING -> QUEUED); then a receiver (ReceiveMessage, up to 10 at a time, long poll) hands work to
a pool of delivery threads, each making the claim (a guarded UpdateItem to PROCESSING with a lease),
the POST to the vendor, the result (an UpdateItem to COMPLETED guarded by the lease) and
DeleteMessage. Submitting threads keep at most `--max-outstanding` messages submitted and not yet
delivered, as the bench's paced scenarios do.

It creates its own table (one key, no index) and queue on the stand-in it is given. CPU is this
process's (getrusage, all threads) between the first submission and the last delivery: what it
costs to do the same work without a framework, to compare with Herald's processes.

    python scripts/bench_floor.py --endpoint http://127.0.0.1:4566 --vendor http://127.0.0.1:8080 \
        --messages 300 [--body-bytes 100]

Prints one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import secrets
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

TABLE = "floor-messages"
QUEUE = "floor-deliveries"
LEASE_SECONDS = 60


def now_text(offset: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Floor:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        config = Config(
            region_name=os.environ.get("AWS_REGION", "us-east-1"),
            retries={"mode": "standard", "total_max_attempts": 3},
            max_pool_connections=64,
        )
        session = boto3.session.Session()
        self.dynamodb = session.client("dynamodb", endpoint_url=options.endpoint, config=config)
        self.sqs = session.client("sqs", endpoint_url=options.endpoint, config=config)
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.conditions_not_met: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.outstanding = threading.Condition()
        self.submitted = 0
        self.delivered = 0
        self.done = threading.Event()
        self.queue_url = ""
        vendor = urllib.parse.urlsplit(options.vendor)
        self.vendor_host, self.vendor_port = vendor.hostname or "127.0.0.1", vendor.port or 80

    def body(self, n: int) -> str:
        """A JSON body of about --body-bytes bytes."""
        bare = json.dumps({"event": "floor", "n": n, "pad": ""}, separators=(",", ":"))
        pad = "x" * max(0, self.options.body_bytes - len(bare))
        return json.dumps({"event": "floor", "n": n, "pad": pad}, separators=(",", ":"))

    def count(self, name: str) -> None:
        with self.lock:
            self.calls[name] += 1

    # -- setup (not measured) --------------------------------------------------------------

    def prepare(self) -> None:
        self.dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        self.dynamodb.get_waiter("table_exists").wait(TableName=TABLE)
        self.queue_url = self.sqs.create_queue(
            QueueName=QUEUE, Attributes={"VisibilityTimeout": "60"}
        )["QueueUrl"]

    # -- intake ----------------------------------------------------------------------------

    def submit(self, n: int) -> None:
        message_id = "msg_" + secrets.token_hex(10)
        stamp = now_text()
        body = self.body(n)
        item = {
            "pk": {"S": message_id},
            "status": {"S": "PENDING"},
            "target_url": {"S": f"{self.options.vendor}/hooks/{n}"},
            "method": {"S": "POST"},
            "headers": {"M": {"Content-Type": {"S": "application/json"}}},
            "body": {"S": body},
            "created_at": {"S": stamp},
            "updated_at": {"S": stamp},
        }
        self.dynamodb.put_item(
            TableName=TABLE, Item=item, ConditionExpression="attribute_not_exists(pk)"
        )
        self.count("dynamodb.PutItem")
        self.sqs.send_message(
            QueueUrl=self.queue_url, MessageBody=json.dumps({"message_id": message_id})
        )
        self.count("sqs.SendMessage")
        self.transition(message_id, ("PENDING",), "QUEUED", {})

    def transition(
        self,
        message_id: str,
        expected: tuple[str, ...],
        target: str,
        changes: dict[str, Any],
        *,
        lease: str | None = None,
        want_item: bool = False,
    ) -> dict[str, Any] | None:
        """A guarded status change: one conditional UpdateItem naming the expected status."""
        names = {"#status": "status"}
        values: dict[str, Any] = {":target": {"S": target}, ":now": {"S": now_text()}}
        assignments = ["#status = :target", "updated_at = :now"]
        for position, (name, value) in enumerate(changes.items()):
            names[f"#c{position}"] = name
            values[f":c{position}"] = {"S": value}
            assignments.append(f"#c{position} = :c{position}")
        alternatives = []
        for position, status in enumerate(expected):
            values[f":e{position}"] = {"S": status}
            alternatives.append(f"#status = :e{position}")
        condition = f"attribute_exists(pk) AND ({' OR '.join(alternatives)})"
        if lease is not None:
            names["#lease"] = "lease_token"
            values[":lease"] = {"S": lease}
            condition += " AND #lease = :lease"
        try:
            response = self.dynamodb.update_item(
                TableName=TABLE,
                Key={"pk": {"S": message_id}},
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW" if want_item else "NONE",
            )
        except ClientError as error:
            self.count("dynamodb.UpdateItem")
            code = error.response["Error"]["Code"]
            with self.lock:
                if code == "ConditionalCheckFailedException":
                    # Mostly PENDING -> QUEUED after a worker claimed it: success, as in Herald.
                    self.conditions_not_met[target] += 1
                else:
                    self.errors[code] += 1
            return None
        self.count("dynamodb.UpdateItem")
        return response.get("Attributes") if want_item else {}

    # -- delivery --------------------------------------------------------------------------

    def deliver(self, raw: dict[str, Any]) -> None:
        message_id = json.loads(raw["Body"])["message_id"]
        lease = secrets.token_hex(8)
        item = self.transition(
            message_id,
            ("PENDING", "QUEUED"),
            "PROCESSING",
            {"lease_token": lease, "lease_expires_at": now_text(LEASE_SECONDS)},
            want_item=True,
        )
        if item is not None:
            status = self.post(item)
            outcome = "COMPLETED" if 200 <= status < 300 else "FAILED"
            self.transition(
                message_id,
                ("PROCESSING",),
                outcome,
                {"last_status_code": str(status)},
                lease=lease,
            )
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=raw["ReceiptHandle"])
        self.count("sqs.DeleteMessage")
        with self.outstanding:
            self.delivered += 1
            self.outstanding.notify_all()
            if self.delivered >= self.options.messages:
                self.done.set()

    def post(self, item: dict[str, Any]) -> int:
        path = urllib.parse.urlsplit(item["target_url"]["S"]).path
        headers = {name: value["S"] for name, value in item["headers"]["M"].items()}
        headers["Herald-Message-Id"] = item["pk"]["S"]
        connection = http.client.HTTPConnection(
            self.vendor_host, self.vendor_port, timeout=self.options.timeout
        )
        try:
            connection.request(
                item["method"]["S"], path, body=item["body"]["S"].encode(), headers=headers
            )
            response = connection.getresponse()
            response.read(1024)
            return response.status
        except OSError:
            return 0
        finally:
            connection.close()

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        options = self.options
        jobs = iter(range(options.messages))
        jobs_lock = threading.Lock()

        def submitter() -> None:
            while True:
                with jobs_lock:
                    n = next(jobs, None)
                if n is None:
                    return
                with self.outstanding:
                    while self.submitted - self.delivered >= options.max_outstanding:
                        self.outstanding.wait(0.5)
                    self.submitted += 1
                self.submit(n)

        pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="delivery")
        in_flight = threading.Semaphore(options.concurrency)

        def receiver() -> None:
            while not self.done.is_set():
                if not in_flight.acquire(timeout=0.5):
                    continue
                free = 1
                while free < 10 and in_flight.acquire(blocking=False):
                    free += 1
                response = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=free,
                    WaitTimeSeconds=options.poll_seconds,
                )
                self.count("sqs.ReceiveMessage")
                received = response.get("Messages", [])
                for _ in range(free - len(received)):
                    in_flight.release()
                for raw in received:
                    pool.submit(self.run_delivery, raw, in_flight)

        cpu_before, began = cpu_seconds(), time.time()
        threads = [threading.Thread(target=submitter) for _ in range(options.submitters)]
        threads.append(threading.Thread(target=receiver))
        for thread in threads:
            thread.start()
        finished = self.done.wait(options.timeout_total)
        cpu_after, ended = cpu_seconds(), time.time()
        self.done.set()
        for thread in threads:
            thread.join()
        pool.shutdown(wait=True)
        return {
            "delivered": self.delivered,
            "submitted": self.submitted,
            "finished": finished,
            "cpu_seconds": cpu_after - cpu_before,
            "wall_seconds": ended - began,
            "calls": dict(self.calls),
            "errors": dict(self.errors),
            "conditions_not_met": dict(self.conditions_not_met),
            "body_bytes": len(self.body(0)),
            "threads": {"submitters": options.submitters, "delivery": options.concurrency},
        }

    def run_delivery(self, raw: dict[str, Any], in_flight: threading.Semaphore) -> None:
        try:
            self.deliver(raw)
        except Exception as error:  # a fault is counted, the slot freed, the run goes on
            with self.lock:
                self.errors[type(error).__name__] += 1
        finally:
            in_flight.release()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="the AWS stand-in's URL")
    parser.add_argument("--vendor", required=True, help="the vendor's base URL")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--body-bytes", type=int, default=100)
    parser.add_argument("--submitters", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32, help="delivery threads")
    parser.add_argument("--max-outstanding", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=20.0, help="per vendor call")
    parser.add_argument("--poll-seconds", type=int, default=10, help="long poll, as the worker's")
    parser.add_argument("--timeout-total", type=float, default=600.0)
    floor = Floor(parser.parse_args(argv))
    floor.prepare()
    print(json.dumps(floor.run()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
