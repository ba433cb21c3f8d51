"""CastRay settings: one module, driven by environment variables.

Defaults give the single-machine setup (SQLite, in-memory channel layer, worker inside the
server, local Ray). `DATABASE_URL`, `REDIS_URL` and `RAY_ADDRESS` switch to production
services. Bad values stop the process at start (see castray_site/env.py).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from castray_site.env import env_bool, env_float, env_int, env_list, env_size, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("CASTRAY_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    # A key from the environment wins; otherwise one is generated once and kept in the
    # data directory (mode 0600), so no secret ever lives in the repository.
    configured = env_str("DJANGO_SECRET_KEY")
    if configured:
        if len(configured) < 32:
            raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 32 characters")
        return configured
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "clusters",
    "nodes",
    "transfers",
    "bridge",
]

MIDDLEWARE = [
    # First, so every response and every error (whatever raised it) has the request's id.
    "castray_site.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "castray_site.urls"
ASGI_APPLICATION = "castray_site.asgi.application"
WSGI_APPLICATION = "castray_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not usable: {exc}") from None
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "castray.sqlite3",
            # Kept open between requests, as with DATABASE_URL: opening one means SQLite reads
            # the schema again at its first query (castray_site/lib/http_threads.py).
            "CONN_MAX_AGE": 60,
            "OPTIONS": {
                # The worker thread and the web server write at once: WAL lets readers
                # go on during a write, IMMEDIATE avoids upgrade deadlocks.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CASTRAY_REDIS_PREFIX", "castray")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "castray_site.channel_layer.InProcessChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "castray_site.api.FilterBackend",
        "castray_site.api.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "castray_site.schema.AutoSchema",
    "EXCEPTION_HANDLER": "castray_site.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CastRay API",
    "DESCRIPTION": "Distribute files and messages across the nodes of a Ray cluster.",
    "VERSION": "1.0.0",
    # The docs' JavaScript and CSS come from drf-spectacular-sidecar's static files, not a CDN:
    # CastRay often runs on networks without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request bodies get their own components (no read-only fields, their own required list),
    # so the schema says what the serializers accept as well as what they answer.
    "COMPONENT_SPLIT_REQUEST": True,
    # The API takes JSON (uploads are multipart, declared on their view). DRF parses forms too,
    # but they are not offered: a form cannot carry the nulls, lists of objects and nesting the
    # serializers read, so a client that used one would get what it did not send.
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    # The schema describes the API, not itself.
    "SERVE_INCLUDE_SCHEMA": False,
}

CORS_ALLOWED_ORIGINS = env_list("CASTRAY_CORS_ORIGINS", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "castray_site.request_id.RequestIdFilter"}},
    "formatters": {"plain": {"()": "castray_site.lib.logformat.PlainFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "loggers": {
        "castray": {"handlers": ["console"], "level": env_str("CASTRAY_LOG_LEVEL", "INFO")},
        # Django logs every unhandled exception here, at ERROR with its traceback and the request.
        # Its default configuration prints that only with DEBUG on (and otherwise mails ADMINS):
        # without this, a 500 left no trace.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}

# --- CastRay ---------------------------------------------------------------------------
# Ray: empty means start a local instance on demand.
RAY_ADDRESS = env_str("RAY_ADDRESS")
CASTRAY_RAY_NAMESPACE = env_str("CASTRAY_RAY_NAMESPACE", "castray")
# Ship the data-plane code to the Ray workers (needed when other hosts lack a checkout).
CASTRAY_RAY_SHIP_CODE = env_bool("CASTRAY_RAY_SHIP_CODE", bool(RAY_ADDRESS))
CASTRAY_STORAGE_DIR = Path(env_str("CASTRAY_STORAGE_DIR", str(DATA_DIR / "storage"))).resolve()
CASTRAY_CHUNK_SIZE = env_size("CASTRAY_CHUNK_SIZE", 4 * 1024 * 1024)
if not 64 * 1024 <= CASTRAY_CHUNK_SIZE <= 64 * 1024 * 1024:
    raise ImproperlyConfigured("CASTRAY_CHUNK_SIZE must be between 64KiB and 64MiB")
# The worker runs inside the server process unless a production database is configured.
CASTRAY_WORKER_IN_PROCESS = env_bool("CASTRAY_WORKER_IN_PROCESS", not DATABASE_URL)
CASTRAY_LEASE_SECONDS = env_int("CASTRAY_LEASE_SECONDS", 30, minimum=5)
CASTRAY_HEARTBEAT_SECONDS = env_float("CASTRAY_HEARTBEAT_SECONDS", 2.0, minimum=0.1)
CASTRAY_OFFLINE_AFTER_SECONDS = env_float("CASTRAY_OFFLINE_AFTER_SECONDS", 10.0, minimum=1.0)
CASTRAY_PROGRESS_INTERVAL = env_float("CASTRAY_PROGRESS_INTERVAL", 0.5, minimum=0.05)
CASTRAY_MAX_ACTIVE_TRANSFERS = env_int("CASTRAY_MAX_ACTIVE_TRANSFERS", 8, minimum=1)
CASTRAY_IO_TIMEOUT = env_float("CASTRAY_IO_TIMEOUT", 60.0, minimum=1.0)
# Niceness of the node actors on the worker's own host (the server's, in the default setup):
# their bulk bytes give way to the API and the feed. Actors on other hosts run at 0.
CASTRAY_LOCAL_NODE_NICE = env_int("CASTRAY_LOCAL_NODE_NICE", 10, minimum=0)
CASTRAY_MAX_UPLOAD_SIZE = env_size("CASTRAY_MAX_UPLOAD_SIZE", 10 * 1024**3)
# Casting defaults (each can be set per node or per cast).
CASTRAY_DEFAULT_FAN_OUT = env_int("CASTRAY_DEFAULT_FAN_OUT", 1, minimum=1)
CASTRAY_DEFAULT_EGRESS_CAP = env_size("CASTRAY_DEFAULT_EGRESS_CAP", 0)  # bytes/s, 0: unlimited
CASTRAY_DEFAULT_INGRESS_CAP = env_size("CASTRAY_DEFAULT_INGRESS_CAP", 0)
CASTRAY_DEFAULT_NODE_CONCURRENCY = env_int("CASTRAY_DEFAULT_NODE_CONCURRENCY", 4, minimum=1)
CASTRAY_INBOX_SIZE = env_int("CASTRAY_INBOX_SIZE", 1000, minimum=1)
# Seconds after which a .part no queued or running cast will resume is removed by the worker.
CASTRAY_PART_MAX_AGE = env_float("CASTRAY_PART_MAX_AGE", 24 * 3600.0, minimum=1.0)
# Rounds of re-parenting after relays fail (targets resume from the chunks they hold).
CASTRAY_REPAIR_ROUNDS = env_int("CASTRAY_REPAIR_ROUNDS", 2, minimum=0)
# Paced send rate of the reliable-UDP mode, bytes per second per receiver (0: unpaced).
CASTRAY_UDP_RATE = env_size("CASTRAY_UDP_RATE", 200 * 1024 * 1024)
# Testing and benchmarking only: the UDP sender skips every Nth datagram of its first pass,
# as if the network lost it, so NACK repair is exercised. 0 (the default) drops nothing.
CASTRAY_UDP_DROP_EVERY = env_int("CASTRAY_UDP_DROP_EVERY", 0, minimum=0)
# Origins (casts from an http(s):// or s3:// URL; dataplane/origin.py). Link-local and cloud
# metadata addresses are always refused; loopback and private ranges only while this is off.
CASTRAY_ORIGIN_ALLOW_PRIVATE = env_bool("CASTRAY_ORIGIN_ALLOW_PRIVATE", False)
CASTRAY_ORIGIN_CACHE_SIZE = env_size("CASTRAY_ORIGIN_CACHE_SIZE", 10 * 1024**3)  # per node's storage
CASTRAY_ORIGIN_TIMEOUT = env_float("CASTRAY_ORIGIN_TIMEOUT", 30.0, minimum=0.1)
# An S3-compatible store (MinIO, Ceph, moto) instead of AWS; credentials: boto3's standard chain.
CASTRAY_S3_ENDPOINT_URL = env_str("CASTRAY_S3_ENDPOINT_URL")

# --- API: anonymous status, throttling, pagination, CORS ---------------------------------
# On a trusted network, dashboards may read /api/status and /health details without a login.
CASTRAY_ANONYMOUS_STATUS = env_bool("CASTRAY_ANONYMOUS_STATUS", False)
# The schema and its docs pages (/api/schema/, /api/docs/, /api/redoc/) need a login (session
# or token) unless this opens them to anyone.
CASTRAY_PUBLIC_API_DOCS = env_bool("CASTRAY_PUBLIC_API_DOCS", False)
# Freeze long-lived objects out of the garbage collector after the first requests
# (castray_site/lib/gc_tuning.py): gen-2 pauses otherwise dominate the API's p99.
CASTRAY_GC_FREEZE = env_bool("CASTRAY_GC_FREEZE", True)


def _throttle_rate(name: str, default: str) -> str | None:
    # DRF's "<count>/<s|min|hour|day>"; "off" disables that throttle.
    raw = env_str(name, default).strip()
    if raw.lower() in ("off", "none", "0"):
        return None
    count, _, period = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or period[:1] not in ("s", "m", "h", "d"):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate; use e.g. 1200/min, 50/s or off")
    return raw


REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] = "castray_site.api.Pagination"
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["castray_site.api.UserThrottle", "castray_site.api.AnonThrottle"]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "user": _throttle_rate("CASTRAY_THROTTLE_USER", "1200/min"),
    "anon": _throttle_rate("CASTRAY_THROTTLE_ANON", "120/min"),
}
# Dashboards on other origins (CASTRAY_CORS_ORIGINS) call the API and /health with a token.
CORS_URLS_REGEX = r"^/(api/|health$)"
# One name per choice set in the OpenAPI schema (several models have a `status`).
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    "TransferStatusEnum": "transfers.models.Transfer.Status",
    "TargetStatusEnum": "transfers.models.Target.Status",
    "MessageStatusEnum": "transfers.models.Message.Status",
    "DeliveryStatusEnum": "transfers.models.Delivery.Status",
    "NodeStatusEnum": "nodes.models.Node.Status",
    "ClusterStatusEnum": "clusters.models.Cluster.Status",
    "GeneratedContentEnum": "dataplane.generator.CONTENT_TYPES",
}

# --- Web pages -------------------------------------------------------------------------
# The pages' own stylesheet and script (whitenoise serves them; nothing comes from a CDN).
STATICFILES_DIRS = [BASE_DIR / "castray_site" / "static"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Clusters, health, demo and production (clusters/) ---------------------------------
# Create one CastRay node for every Ray node that has none, as machines join (off: on request).
CASTRAY_ADOPT_RAY_NODES = env_bool("CASTRAY_ADOPT_RAY_NODES", False)
# The Ray node label that names a machine (`ray start --labels castray.io/node=<name>`): adopted
# nodes take it as their name, and a restarted raylet with the same label gets its nodes back.
CASTRAY_RAY_NODE_LABEL = env_str("CASTRAY_RAY_NODE_LABEL", "castray.io/node")
# A dead Ray node's CastRay nodes are offline within this many seconds. The worker probes each
# raylet every heartbeat; one that has refused for a sixth of this (at least one heartbeat) is down.
CASTRAY_NODE_DOWN_AFTER_SECONDS = env_float("CASTRAY_NODE_DOWN_AFTER_SECONDS", 30.0, minimum=1.0)
if CASTRAY_NODE_DOWN_AFTER_SECONDS < 3 * CASTRAY_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("CASTRAY_NODE_DOWN_AFTER_SECONDS must be at least 3 heartbeats")
# How often the worker records actors, object store use and per-node resources (/ray/stats).
CASTRAY_RAY_STATS_SECONDS = env_float("CASTRAY_RAY_STATS_SECONDS", 5.0, minimum=0.5)
# Discovery reads Ray's session files under these directories and asks these loopback ports
# for a Ray dashboard. It never changes or stops what it finds.
CASTRAY_RAY_TEMP_DIRS = env_list("CASTRAY_RAY_TEMP_DIRS", ["/tmp/ray"])
try:
    CASTRAY_DASHBOARD_PORTS = [int(p) for p in env_list("CASTRAY_DASHBOARD_PORTS", ["8265"])]
except ValueError:
    raise ImproperlyConfigured("CASTRAY_DASHBOARD_PORTS must be a comma-separated list of port numbers") from None
# Ray token authentication: auto (use a token when one is at hand), token, or disabled.
CASTRAY_RAY_AUTH = env_str("CASTRAY_RAY_AUTH", "auto").strip().lower()
if CASTRAY_RAY_AUTH not in ("auto", "token", "disabled"):
    raise ImproperlyConfigured("CASTRAY_RAY_AUTH must be auto, token or disabled")
CASTRAY_RAY_AUTH_TOKEN_FILE = env_str("CASTRAY_RAY_AUTH_TOKEN_FILE")  # passed to Ray as RAY_AUTH_TOKEN_PATH
# Demo mode: every interval the worker casts a random demo file from a random online node to
# up to two others. Switched on and off at run time from the API or the admin (RuntimeConfig).
CASTRAY_DEMO_MODE = env_bool("CASTRAY_DEMO_MODE", False)
CASTRAY_DEMO_INTERVAL = env_float("CASTRAY_DEMO_INTERVAL", 30.0, minimum=1.0)
CASTRAY_DEMO_FILE_SIZE = env_size("CASTRAY_DEMO_FILE_SIZE", 1024 * 1024)
# /metrics (Prometheus): scrapers send `Authorization: Bearer <CASTRAY_METRICS_TOKEN>`; staff
# sessions may read it too, nobody else. CASTRAY_METRICS=off removes the endpoint.
CASTRAY_METRICS = env_bool("CASTRAY_METRICS", True)
CASTRAY_METRICS_TOKEN = env_str("CASTRAY_METRICS_TOKEN")

# Structured logs: one JSON object per line (for journald, Loki, Elasticsearch).
CASTRAY_LOG_FORMAT = env_str("CASTRAY_LOG_FORMAT", "plain").strip().lower()
if CASTRAY_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("CASTRAY_LOG_FORMAT must be plain or json")
if CASTRAY_LOG_FORMAT == "json":
    LOGGING["formatters"]["json"] = {"()": "castray_site.lib.logformat.JsonFormatter"}
    LOGGING["handlers"]["console"]["formatter"] = "json"
    for _name in ("django", "django.request", "daphne"):
        LOGGING["loggers"][_name] = {"handlers": ["console"], "level": "INFO", "propagate": False}

# Production: HTTPS only (TLS ends here or at a proxy that sets X-Forwarded-Proto), secure
# cookies, HSTS, and no silent fallbacks. `manage.py check --deploy` is clean with it.
CASTRAY_PRODUCTION = env_bool("CASTRAY_PRODUCTION", False)
if CASTRAY_PRODUCTION:
    if not env_str("DJANGO_SECRET_KEY"):
        raise ImproperlyConfigured("CASTRAY_PRODUCTION needs DJANGO_SECRET_KEY (the same on every server process)")
    if not env_list("DJANGO_ALLOWED_HOSTS", []):
        raise ImproperlyConfigured("CASTRAY_PRODUCTION needs DJANGO_ALLOWED_HOSTS (the names clients use)")
    if DEBUG:
        raise ImproperlyConfigured("CASTRAY_PRODUCTION cannot run with DJANGO_DEBUG on")
    if CASTRAY_METRICS and not CASTRAY_METRICS_TOKEN:
        # Without it Prometheus could not scrape: the operator would open /metrics some other way.
        raise ImproperlyConfigured(
            "CASTRAY_PRODUCTION needs CASTRAY_METRICS_TOKEN (Prometheus sends it as a Bearer token), "
            "or CASTRAY_METRICS=off"
        )
    SECURE_SSL_REDIRECT = env_bool("CASTRAY_SSL_REDIRECT", True)
    # Load balancers and Prometheus may ask these over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]
    if env_bool("CASTRAY_BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("CASTRAY_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("CASTRAY_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("CASTRAY_HSTS_PRELOAD", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
