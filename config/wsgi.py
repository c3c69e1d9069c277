"""WSGI entry point (gunicorn serves it; see config/gunicorn.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

# Imported once Django is set up: it reads settings and the API's error shape.
from notifications.api.body_limit import RequestBodyLimit  # noqa: E402

application = RequestBodyLimit(django_application)
