# The bot in a small image: official slim Python, a non-root user, the database on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY config ./config
RUN pip install . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /app/data \
    && chown bot /app/data

USER bot
# Jobs, quota ledger and the command hash live here; keep it on a volume so restarts resume jobs.
VOLUME ["/app/data"]
ENV DATABASE_URL=sqlite:////app/data/bot.sqlite3

# With HTTP__PORT set, Docker asks the bot's /healthz (gateway connected, database answering); without
# it the check passes while the process runs. A script, not curl: slim images have none.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "bot.healthcheck"]

ENTRYPOINT ["python", "-m", "bot"]
