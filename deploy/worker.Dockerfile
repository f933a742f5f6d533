# A Prefect worker for a GPU machine: the repository, its Python environment, ffmpeg and mkvtoolnix.
#
#   docker build -f deploy/worker.Dockerfile -t colorize-worker .
#   docker run --gpus '"device=0"' -e PREFECT_API_URL=http://prefect.internal:4200/api \
#       -e COLORIZE_DB_URL=postgresql://colorize@db.internal/provenance \
#       -e AWS_ENDPOINT_URL=... -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... \
#       colorize-worker --work-queue gpu-0
#
# One container per GPU (--gpus device=N), each a worker of the `colorize` pool that runs one flow
# run at a time (--limit 1); the `gpu` tag concurrency limit (deploy/setup.sh, COLORIZE_GPUS =
# the number of GPUs in the fleet) bounds colorize tasks across all of them. PyPI's Linux torch
# wheel includes CUDA; the model is trained by the project and ships in the package (nothing is
# downloaded at run time).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg mkvtoolnix \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/colorize
COPY pyproject.toml README.md ./
COPY colorize_core colorize_core
COPY colorize_cli colorize_cli
COPY flows flows
COPY tasks tasks
COPY deploy deploy
RUN pip install --no-cache-dir .

ENV COLORIZE_HOME=/opt/colorize \
    COLORIZE_DEVICE=cuda \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
ENTRYPOINT ["prefect", "worker", "start", "--pool", "colorize", "--limit", "1"]
