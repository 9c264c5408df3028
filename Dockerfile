# One image for every cbdc service and for the Locust master and workers
# (docker-compose.yml runs it with different commands).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cbdc ./cbdc
COPY settlement ./settlement
COPY central_bank ./central_bank
COPY commercial_bank ./commercial_bank
COPY wallet_tui ./wallet_tui
COPY loadtest ./loadtest
RUN pip install --no-cache-dir .
ENV CBDC_DATA_DIR=/data
