"""Django settings for Herald.

Every setting comes from the environment (django-environ), with a default that is safe for local use.
A `.env` file in the project root (written by `make run`) is read first, so management commands in a
second terminal reach the same embedded stack; `HERALD_ENV_FILE` points elsewhere. Real environment
variables always win over the file.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
ENV_FILE = env.str("HERALD_ENV_FILE", default=str(BASE_DIR / ".env"))
if Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE)

# The web server refuses to start with DEBUG off and this key (config/gunicorn.py).
DEVELOPMENT_SECRET_KEY = "insecure-development-key-change-me"  # noqa: S105 - public on purpose
SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Behind a TLS-terminating load balancer: trust its scheme header (e.g.
# `HTTP_X_FORWARDED_PROTO,https`), redirect plain HTTP, send HSTS and secure-only cookies. The
# defaults suit a laptop; docs/deploy.md lists the production values. /livez, /readyz and /metrics
# are answered before these apply (notifications.status_middleware), so a load balancer or
# Prometheus probing over plain HTTP by IP address is neither redirected nor refused.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) if _proxy_ssl_header else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from STATIC_ROOT like the admin's
    "notifications",
]

MIDDLEWARE = [
    # First: probes and /metrics skip host checks, the HTTPS redirect, sessions and the rest.
    "notifications.status_middleware.StatusEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Flash messages (which show a new API key or signing secret once) stay in the server-side session,
# never in a cookie the browser could keep.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

ROOT_URLCONF = "config.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `collectstatic` fills it (at image build, or as the web process starts); WhiteNoise serves it
# with far-future caching, thanks to the hashed names of the manifest storage.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Herald -----------------------------------------------------------------------------------

PORT = env.int("PORT", default=8000)
# The web server (gunicorn, gthread workers; see config/gunicorn.py): processes and threads each.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=2)
WEB_THREADS = env.int("WEB_THREADS", default=8)
# /readyz: seconds each dependency check (DynamoDB DescribeTable, SQS GetQueueAttributes) may take.
READINESS_TIMEOUT = env.float("READINESS_TIMEOUT", default=2.0)
# The worker's /metrics, /livez and /readyz (0: not served).
WORKER_METRICS_HOST = env.str("WORKER_METRICS_HOST", default="127.0.0.1")
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=8001)

# AWS: region and credentials come from the standard boto3 chain. AWS_ENDPOINT_URL is only set for
# the embedded stand-in (or another AWS-compatible endpoint); unset, boto3 talks to real AWS.
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default="") or None
AWS_REGION = env.str("AWS_REGION", default="us-east-1")
AWS_MAX_ATTEMPTS = env.int("AWS_MAX_ATTEMPTS", default=3)
AWS_CONNECT_TIMEOUT = env.float("AWS_CONNECT_TIMEOUT", default=2.0)
AWS_READ_TIMEOUT = env.float("AWS_READ_TIMEOUT", default=10.0)

DYNAMODB_TABLE = env.str("DYNAMODB_TABLE", default="herald-messages")
# Partition values per listing-index question (see the README's storage section): fixed for the
# life of a table.
DYNAMODB_INDEX_SHARDS = env.int("DYNAMODB_INDEX_SHARDS", default=8)
SQS_QUEUE_NAME = env.str("SQS_QUEUE_NAME", default="herald-deliveries")
SQS_DLQ_NAME = env.str("SQS_DLQ_NAME", default="") or f"{SQS_QUEUE_NAME}-dlq"
SQS_MAX_RECEIVE_COUNT = env.int("SQS_MAX_RECEIVE_COUNT", default=5)
SQS_VISIBILITY_TIMEOUT = env.int("SQS_VISIBILITY_TIMEOUT", default=60)

# Per-producer intake limits (defaults; each producer can have its own in the admin): submissions
# per second, and how many may come at once. INTAKE_RATE=0 turns the limit off.
INTAKE_RATE = env.int("INTAKE_RATE", default=100)
INTAKE_BURST = env.int("INTAKE_BURST", default=200)

MAX_MESSAGE_BYTES = env.int("MAX_MESSAGE_BYTES", default=256 * 1024)
# Django refuses request bodies above this before DRF parses them; keep it above Herald's own limit
# so that Herald answers with its own 413 envelope.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_MESSAGE_BYTES + 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "notifications.api.authentication.ProducerKeyAuthentication"
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["notifications.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "notifications.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "notifications.api.schema.ContractSchema",
}

# The API's OpenAPI document (GET /api/schema/, docs/openapi.yaml) and its Swagger UI
# (GET /api/docs/), both readable without an API key. What each operation declares lives in
# notifications/api/schema.py.
SPECTACULAR_SETTINGS = {
    "TITLE": "Herald producer API",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",  # from Herald's own static files, never a CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "notifications.api.schema.complete_document",
    ],
}

# Text by default; LOG_FORMAT=json writes one JSON object per line. Both formatters mask
# secret-looking values (notifications/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "notifications.logs.TextFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "notifications.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}

# Delivery (workers). Seconds unless noted.
WORKER_CONCURRENCY = env.int("WORKER_CONCURRENCY", default=32)
WORKER_POLL_SECONDS = env.int("WORKER_POLL_SECONDS", default=10)
WORKER_SHUTDOWN_GRACE = env.float("WORKER_SHUTDOWN_GRACE", default=30.0)
# Deletes and visibility changes are sent ten to a request, a partial batch after this long. A
# delete must reach SQS well before its queue message's visibility timeout ends (or the message
# is received again), hence the cap at a tenth of it (see notifications/worker/acks.py).
WORKER_ACK_FLUSH_SECONDS = min(
    env.float("WORKER_ACK_FLUSH_SECONDS", default=1.0), SQS_VISIBILITY_TIMEOUT / 10
)
DELIVERY_CONNECT_TIMEOUT = env.float("DELIVERY_CONNECT_TIMEOUT", default=5.0)
DELIVERY_TIMEOUT = env.float("DELIVERY_TIMEOUT", default=30.0)
# A lease outlives the longest possible call, so a live worker never loses its lease mid-call.
DELIVERY_LEASE_SECONDS = max(
    env.float("DELIVERY_LEASE_SECONDS", default=DELIVERY_TIMEOUT + 30), DELIVERY_TIMEOUT + 5
)
DELIVERY_RETRYABLE_STATUSES = env.str("DELIVERY_RETRYABLE_STATUSES", default="408,425,429,500-599")
# SSRF guard: networks that deliveries may reach although they are not globally routable.
DELIVERY_ALLOWED_NETWORKS = env.list("DELIVERY_ALLOWED_NETWORKS", default=[])
# CA bundle for verifying targets' certificates (default: the system's / certifi's).
DELIVERY_CA_BUNDLE = env.str("DELIVERY_CA_BUNDLE", default="") or None
# Fairness: deliveries in flight per target host, and the share of a worker's slots that retries
# may occupy, so one slow vendor or a wave of retries cannot hold up everyone else.
DELIVERY_MAX_PER_HOST = env.int("DELIVERY_MAX_PER_HOST", default=8)
WORKER_RETRY_SHARE = env.float("WORKER_RETRY_SHARE", default=0.5)
# The share of a worker's slots one producer's messages may hold while another producer is active
# (had messages in the last minute); a producer alone may use every slot.
WORKER_PRODUCER_SHARE = env.float("WORKER_PRODUCER_SHARE", default=0.5)
# Messages held back by those limits wait inside the worker (no AWS calls, no receive count), up
# to this many; beyond it they are deferred through SQS.
WORKER_MAX_WAITING = env.int("WORKER_MAX_WAITING", default=128)
# How long a worker keeps what it read of a producer (active or not, signing secrets): a
# deactivation or a secret rotation reaches deliveries within this time.
PRODUCER_CACHE_SECONDS = env.float("PRODUCER_CACHE_SECONDS", default=30.0)
# Target hosts across the fleet (defaults for hosts without a policy; a policy is edited in the
# admin or with `manage.py host policy`). 0: no limit, or for the threshold no circuit breaking.
HOST_MAX_IN_FLIGHT = env.int("HOST_MAX_IN_FLIGHT", default=0)
HOST_MAX_PER_SECOND = env.int("HOST_MAX_PER_SECOND", default=0)
CIRCUIT_FAILURE_THRESHOLD = env.int("CIRCUIT_FAILURE_THRESHOLD", default=10)
CIRCUIT_COOL_OFF_SECONDS = env.float("CIRCUIT_COOL_OFF_SECONDS", default=30.0)
CIRCUIT_MAX_COOL_OFF_SECONDS = env.float("CIRCUIT_MAX_COOL_OFF_SECONDS", default=600.0)
# How often a worker re-reads the state of the hosts it has work for, and the policies: a pause,
# an open circuit seen by another worker or a policy change reaches it within this time.
HOST_STATE_REFRESH_SECONDS = env.float("HOST_STATE_REFRESH_SECONDS", default=2.0)
# A worker's share of a host's in-flight limit is a lease for this long (renewed while in use):
# a share held by a worker that died is free again after it. It outlasts a call, so that a live
# worker that cannot renew (AWS unreachable) still holds the slots of the calls it has running.
HOST_SLOT_LEASE_SECONDS = env.float("HOST_SLOT_LEASE_SECONDS", default=DELIVERY_TIMEOUT + 30)
# A deactivated producer's messages wait: each is looked at again after this many seconds.
DELIVERY_HOLD_SECONDS = env.int("DELIVERY_HOLD_SECONDS", default=300)
RETRY_SCHEDULE = env.str("RETRY_SCHEDULE", default="5,30,120,600,1800,3600,7200,14400,28800,57600")
RETRY_JITTER = env.float("RETRY_JITTER", default=0.2)
RETRY_MAX_ATTEMPTS = env.int("RETRY_MAX_ATTEMPTS", default=11)
RETRY_MAX_AGE = env.float("RETRY_MAX_AGE", default=3 * 24 * 3600)
# Dashboard counts: each process writes its status-count changes once per this many seconds (0:
# with every change). See "How the dashboard counts" in the README.
STATS_FLUSH_SECONDS = env.float("STATS_FLUSH_SECONDS", default=1.0)
# Finished (COMPLETED/FAILED) messages, with their requests and attempts, are deleted this many
# days after they finished (DynamoDB TTL); 0 keeps them forever.
MESSAGE_RETENTION_DAYS = env.float("MESSAGE_RETENTION_DAYS", default=28)
RECONCILE_INTERVAL = env.int("RECONCILE_INTERVAL", default=30)
RECONCILE_OLDER_THAN = env.int("RECONCILE_OLDER_THAN", default=120)
