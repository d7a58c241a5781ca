# The hpo image: the project with its locked dependencies, including PyPI's CUDA build of
# torch (it bundles the CUDA libraries; the host needs only the NVIDIA driver and the
# NVIDIA Container Toolkit).
FROM python:3.11-slim

ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv

WORKDIR /app
# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY hpo ./hpo
COPY studies ./studies
RUN uv sync --locked --no-dev

ENV PATH=/app/.venv/bin:$PATH \
    HPO_DATA_DIR=/data \
    HPO_ARTIFACT_DIR=/artifacts
CMD ["hpo", "--help"]
