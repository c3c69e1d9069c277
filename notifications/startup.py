"""What a long-running Herald process does once it has started: load what it will use for its
whole life, then keep the garbage collector from scanning it again.

CPython's full collections walk every tracked object; Django, DRF and botocore's service models
are hundreds of thousands of them, none ever garbage. `gc.freeze()` moves what exists into a
permanent generation that collections skip (the standard library's advice for long-lived
servers). Called by `manage.py run_worker` before the worker runs and by gunicorn's
`post_worker_init` hook (config/gunicorn.py).
"""

from __future__ import annotations

import gc

from notifications import aws


def freeze_startup_objects(*, web: bool = False) -> None:
    """Build the AWS clients (lazily built otherwise: after the freeze) and, for a web process,
    the URLconf with its views (imported on the first request otherwise); collect what startup
    left as garbage; freeze the rest."""
    aws.dynamodb()
    aws.sqs()
    if web:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - imports every view module now
    gc.collect()
    gc.freeze()
