# mt serve in a container: the repository's checkout on a slim Python, with the CPU build of
# torch (a plain `pip install torch` on Linux pulls the multi-GB CUDA build). Models are mounted.
#   docker build -t mt .
#   docker run --rm -p 5000:5000 -v "$PWD/models:/models:ro" mt serve --model /models/en-fr --host 0.0.0.0
# Not built on the machines mt is tested on (no Docker daemon there): see docs/serving.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.1,<3"

WORKDIR /opt/mt
COPY pyproject.toml README.md ./
COPY machine_translation ./machine_translation
COPY encoder_transformer ./encoder_transformer
COPY decoder ./decoder
COPY tokenizers ./tokenizers
RUN pip install . && useradd --system --no-create-home mt

USER mt
EXPOSE 5000
# SIGTERM answers the requests already accepted, then stops (docs/serving.md, systemd)
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"
ENTRYPOINT ["mt"]
CMD ["serve", "--help"]
