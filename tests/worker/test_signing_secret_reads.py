"""A delivery thread reads producers' signing secrets through the ORM, outside Django's request
cycle. A connection that died under it (a database restart) must not fail every later read: the
next read closes it and reconnects.

Runs in a separate process on a file-based SQLite database: the test database is in memory, and
Django never closes in-memory connections, so the recovery could not show there.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.support import ROOT, clean_environment

pytestmark = pytest.mark.e2e

DELIVERY_THREAD = """
import json, threading
from django.db import connection
from notifications import services
from notifications.models import Producer
from notifications.selectors import ProducerCache

producer = Producer(name="signing")
producer.set_new_api_key()
producer.save()
secret = services.signing_secret_rotate(producer=producer)
cache = ProducerCache(ttl_seconds=0)  # every get reads the database
reads = []

def delivery_thread():
    reads.append(cache.get(producer.public_id).signing_secrets)
    connection.ensure_connection()  # the thread holds a connection, as after any ORM use
    connection.connection.close()  # and the database closes it under the thread
    try:
        reads.append(cache.get(producer.public_id).signing_secrets)
    except Exception as error:
        reads.append(type(error).__name__)

thread = threading.Thread(target=delivery_thread)
thread.start()
thread.join()
print(json.dumps({"reads": reads, "secret": secret}))
"""


def test_a_delivery_thread_recovers_after_its_connection_was_closed_under_it(tmp_path):
    env = clean_environment(tmp_path)
    for command in (["migrate", "--noinput", "-v", "0"], ["shell", "-c", DELIVERY_THREAD]):
        result = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["reads"] == [[outcome["secret"]], [outcome["secret"]]]
