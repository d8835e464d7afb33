"""PharmaDMS settings: one file, every value from the environment (12-factor).

Unset, each value falls back to an embedded default that runs on one machine with nothing
installed: SQLite under var/, Celery tasks run in-process, MQTT on the in-process broker.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PHARMADMS_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: set it (50+ random characters), or DEBUG=true for development"
        )
    SECRET_KEY = "insecure-development-key-only-used-when-DEBUG-is-on-0123456789"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "audit",
    "partners",
    "batches",
    "orders",
    "coldchain",
    "recalls",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Outside everything that can refuse (CSRF, auth, the API, axes): it sees every 401 and 403.
    "pharmadms.middleware.DeniedRequestAuditMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes requires: it turns a lockout into pharmadms.middleware.lockout_response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pharmadms.urls"
WSGI_APPLICATION = "pharmadms.wsgi.application"
ASGI_APPLICATION = "pharmadms.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "pharmadms" / "templates"],
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

# Database: DATABASE_URL (postgres://... through psycopg 3), else an SQLite file under var/.
# Connections persist between requests: a new connection per request cut API throughput 4x.
CONN_MAX_AGE = int(os.environ.get("CONN_MAX_AGE", "600"))
if os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"], conn_max_age=CONN_MAX_AGE, conn_health_checks=True
        )
    }
    # Prepared statements: a statement run a few times on a connection is planned once. It
    # more than halved the scan path's time in the database (bench/scan.py). Turn it off behind
    # a pooler in transaction mode that does not track prepared statements (PgBouncer < 1.21).
    if env_bool("DATABASE_PREPARED_STATEMENTS", True) and DATABASES["default"]["ENGINE"].endswith(
        "postgresql"
    ):
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=5
        )
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "pharmadms.sqlite3",
            "CONN_MAX_AGE": CONN_MAX_AGE,
            "OPTIONS": {
                # WAL and a busy timeout let the demo server and a command share the file.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache (throttling counters): CACHE_URL=redis://... shares them across processes and machines.
if os.environ.get("CACHE_URL", "").startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["CACHE_URL"],
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "partners.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes checks every authentication (sign-in, API token, electronic signature) first:
# after 5 failures for a username, that username is refused until the cool-off ends
# (AXES_COOLOFF_MINUTES=0: until an administrator runs `manage.py axes_reset_username <name>`).
# A success resets the count. Every failure and lockout is also sealed into the audit chain.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
# By username alone, deliberately: partners' staff share an office address (NAT), so locking by
# address would let five typos lock out a whole wholesaler. Axes warns about that choice (W006).
AXES_LOCKOUT_PARAMETERS = ["username"]
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_COOLOFF_MINUTES = int(os.environ.get("AXES_COOLOFF_MINUTES", "30"))
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES) if AXES_COOLOFF_MINUTES > 0 else None
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 403
AXES_LOCKOUT_CALLABLE = "pharmadms.middleware.lockout_response"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve app static files straight from their apps: no collectstatic step before a first run.
WHITENOISE_USE_FINDERS = True

# Security: strict by default; DEBUG relaxes only what a local http:// demo needs.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", str(30 * 60)))
SESSION_SAVE_EVERY_REQUEST = True  # the timeout counts from the last request, not the login
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
# Behind one TLS-terminating proxy: trust its X-Forwarded-Proto, and take the client's address
# from the last X-Forwarded-For entry, the one the proxy appends (throttles, refusal counts).
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "partners.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["pharmadms.permissions.PartnerRolePermission"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "pharmadms.exception_handler.api_exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Password guessing at the token endpoint is slowed per client address.
    "DEFAULT_THROTTLE_RATES": {"token": os.environ.get("API_TOKEN_THROTTLE", "10/min")},
    # Throttles count by the client's address: the proxy's last X-Forwarded-For entry behind
    # it, else the connection's (never a header the client could write itself).
    "NUM_PROXIES": 1 if BEHIND_TLS_PROXY else 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PharmaDMS API",
    "DESCRIPTION": "Distribution management for prescription medicines and their cold chain.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The scan action's choices are named once: "action" is also the audit entry's enum.
    "ENUM_NAME_OVERRIDES": {"ScanActionEnum": "batches.models.ScanAction"},
}
API_TOKEN_TTL = timedelta(hours=int(os.environ.get("API_TOKEN_TTL_HOURS", "8")))

# Celery: unset broker runs every task in-process, at once (the embedded default).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Periodic tasks for `celery beat`: the daily stock alerts, and the webhook deliveries left
# pending while the broker was unreachable.
CELERY_BEAT_SCHEDULE = {
    "raise-stock-alerts": {
        "task": "orders.raise_stock_alerts",
        "schedule": crontab(
            hour=int(os.environ.get("STOCK_ALERTS_HOUR", "6")),
            minute=int(os.environ.get("STOCK_ALERTS_MINUTE", "0")),
        ),
    },
    "requeue-webhook-deliveries": {
        "task": "integrations.requeue_webhook_deliveries",
        "schedule": 600.0,
    },
    # Recalls: hourly reminders to consignees silent for RECALL_REMINDER_HOURS, and a daily
    # pass that issues the status reports due every RECALL_STATUS_REPORT_DAYS (21 CFR 7.53).
    "recall-reminders": {"task": "recalls.send_reminders", "schedule": 3600.0},
    "recall-status-reports": {
        "task": "recalls.generate_status_reports",
        "schedule": crontab(hour=5, minute=30),
    },
    # Cold chain: re-evaluate shipments in transit every 10 minutes, catching up evaluations whose
    # task was lost while the broker was down (evaluation is idempotent).
    "coldchain-evaluate-in-transit": {"task": "coldchain.evaluate_in_transit", "schedule": 600.0},
    # Audit: the whole chain verified every night, the result kept (audit.ChainVerification).
    "audit-verify-chain": {
        "task": "audit.verify_chain",
        "schedule": crontab(
            hour=int(os.environ.get("AUDIT_VERIFY_HOUR", "2")),
            minute=int(os.environ.get("AUDIT_VERIFY_MINUTE", "15")),
        ),
    },
}
RECALL_REMINDER_HOURS = int(os.environ.get("RECALL_REMINDER_HOURS", "24"))
RECALL_STATUS_REPORT_DAYS = int(os.environ.get("RECALL_STATUS_REPORT_DAYS", "14"))

# Sales analytics and replenishment (orders.analytics): a lot on hand expiring within
# NEAR_EXPIRY_ALERT_DAYS is flagged; daily demand is averaged over DEMAND_WINDOW_DAYS; the
# reorder point covers REPLENISHMENT_LEAD_TIME_DAYS of demand plus half as much safety stock.
NEAR_EXPIRY_ALERT_DAYS = int(os.environ.get("NEAR_EXPIRY_ALERT_DAYS", "90"))
DEMAND_WINDOW_DAYS = int(os.environ.get("DEMAND_WINDOW_DAYS", "90"))
REPLENISHMENT_LEAD_TIME_DAYS = int(os.environ.get("REPLENISHMENT_LEAD_TIME_DAYS", "14"))

# E-mail to partners' contacts (business event notices): EMAIL_BACKEND unset prints mail to the
# console with DEBUG and sends through SMTP (EMAIL_HOST…) otherwise. Tests use Django's locmem.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "PharmaDMS <noreply@localhost>")

# Webhooks: each attempt waits at most WEBHOOK_TIMEOUT_SECONDS; a failed one is retried after
# WEBHOOK_BACKOFF_SECONDS × 2^(n−1) until WEBHOOK_MAX_ATTEMPTS have been made.
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "5"))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "5"))
WEBHOOK_BACKOFF_SECONDS = float(os.environ.get("WEBHOOK_BACKOFF_SECONDS", "30"))
# Webhooks go to public hosts only: a URL on a private, loopback or link-local address (or a
# name that resolves to one) could carry signed events, or probes, into the site's own network.
WEBHOOK_ALLOW_PRIVATE_HOSTS = env_bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", DEBUG)

# GS1 Digital Link resolvers whose URIs a scan acts on (batches.gs1): GS1's own, plus the
# brand owners' a deployment trusts (comma-separated host names).
GS1_DIGITAL_LINK_HOSTS = env_list("GS1_DIGITAL_LINK_HOSTS", "id.gs1.org")

# MQTT: unset means the in-process broker the demo starts on this port.
MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1884")

SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True
SIMPLE_HISTORY_ENABLED = True  # never switched off: every regulated write keeps its history

DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "")

# Key that signs the audit chain's head (manage.py audit_anchor); keep a copy of each anchor
# outside the database. Unset in DEBUG: derived from SECRET_KEY, good for a demo only.
AUDIT_ANCHOR_KEY = os.environ.get("AUDIT_ANCHOR_KEY", "") or (
    f"development-anchor-key:{SECRET_KEY}" if DEBUG else ""
)

# Refused requests (401/403) sealed one by one per client (user, else address) and minute;
# beyond that a notice says so, and the next minute's first entry counts the rest: a flood of
# refusals cannot hold up every regulated write on the audit chain's head.
AUDIT_DENIED_PER_MINUTE = int(os.environ.get("AUDIT_DENIED_PER_MINUTE", "30"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
