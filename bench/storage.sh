#!/usr/bin/env bash
# Storage throughput: rbm's streaming upload and download of 1 GiB to S3 (s3s-fs) and
# Azure Blob (Azurite) beside the same servers' raw throughput with a stock client
# (one plain PUT / GET of the same file with boto3 and azure-storage-blob), and rbm's
# peak RSS. A benchmark, not a test: it prints figures, it asserts nothing.
#
# Usage: bench/storage.sh [size-MiB]   (default 1024; services are started if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbm/target}"
size_mib="${1:-1024}"
# rbm's defaults unless overridden: part/block size in MiB and parts in flight.
part_mib="${RBM_BENCH_PART_MIB:-10}"
in_flight="${RBM_BENCH_IN_FLIGHT:-2}"

started_here=0
if ! scripts/test-services status >/dev/null 2>&1; then
  scripts/test-services install >/dev/null
  scripts/test-services start >/dev/null
  started_here=1
fi
work="$(mktemp -d /tmp/rbm-bench-storage.XXXXXX)"
cleanup() {
  rm -rf "$work"
  if [ "$started_here" = 1 ]; then scripts/test-services stop >/dev/null || true; fi
}
trap cleanup EXIT
eval "$(scripts/test-services env)"

cargo build --release --quiet -p rbm-agent --bin rbm
rbm="$CARGO_TARGET_DIR/release/rbm"
head -c "$((size_mib << 20))" /dev/urandom > "$work/data.bin"

cat > "$work/s3.yaml" <<YAML
storage:
  type: s3
  s3:
    region: us-east-1
    endpointUrl: $RBM_TEST_S3_ENDPOINT
    bucket: $RBM_TEST_S3_BUCKET
    prefix: bench
    uploadPartSize: $((part_mib << 20))
    uploadConcurrency: $in_flight
    credentials:
      access-key-id: $RBM_TEST_S3_ACCESS_KEY
      secret-access-key: $RBM_TEST_S3_SECRET_KEY
YAML
cat > "$work/azure.yaml" <<YAML
storage:
  type: azure
  azure:
    account: $RBM_TEST_AZURE_ACCOUNT
    container: $RBM_TEST_AZURE_CONTAINER
    endpointUrl: $RBM_TEST_AZURE_ENDPOINT
    prefix: bench
    uploadPartSize: $((part_mib << 20))
    uploadConcurrency: $in_flight
    credentials:
      key: $RBM_TEST_AZURE_KEY
YAML

# The stock clients: one PUT and one GET of the whole file, timed in-process.
raw() {
  "$RBM_TEST_VENV/bin/python" - "$1" "$work/data.bin" <<'PY'
import os, sys, time, json
kind, path = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
env = os.environ
if kind == "s3":
    for k in ("AWS_CA_BUNDLE",):
        env.pop(k, None)
    import boto3
    from botocore.config import Config
    c = boto3.client("s3", endpoint_url=env["RBM_TEST_S3_ENDPOINT"], region_name="us-east-1",
                     aws_access_key_id=env["RBM_TEST_S3_ACCESS_KEY"],
                     aws_secret_access_key=env["RBM_TEST_S3_SECRET_KEY"],
                     config=Config(s3={"addressing_style": "path"}))
    b = env["RBM_TEST_S3_BUCKET"]
    t = time.monotonic()
    with open(path, "rb") as f:
        c.put_object(Bucket=b, Key="bench/raw.bin", Body=f, ContentLength=size)
    up = time.monotonic() - t
    # The same stock client's multipart upload (8 MiB parts, 10 threads): what a
    # server that pays extra for multipart (s3s-fs concatenates parts on completion)
    # gives any multipart client.
    from boto3.s3.transfer import TransferConfig
    t = time.monotonic()
    c.upload_file(path, b, "bench/raw-mp.bin", Config=TransferConfig(multipart_chunksize=8 << 20))
    mp = time.monotonic() - t
    c.delete_object(Bucket=b, Key="bench/raw-mp.bin")
    t = time.monotonic()
    body = c.get_object(Bucket=b, Key="bench/raw.bin")["Body"]
    n = 0
    for chunk in iter(lambda: body.read(1 << 20), b""):
        n += len(chunk)
    down = time.monotonic() - t
    c.delete_object(Bucket=b, Key="bench/raw.bin")
else:
    from azure.storage.blob import BlobServiceClient
    conn = ("DefaultEndpointsProtocol=http;AccountName={a};AccountKey={k};BlobEndpoint={e};"
            .format(a=env["RBM_TEST_AZURE_ACCOUNT"], k=env["RBM_TEST_AZURE_KEY"], e=env["RBM_TEST_AZURE_ENDPOINT"]))
    svc = BlobServiceClient.from_connection_string(conn, max_single_put_size=size + 1)
    blob = svc.get_blob_client(env["RBM_TEST_AZURE_CONTAINER"], "bench/raw.bin")
    t = time.monotonic()
    with open(path, "rb") as f:
        blob.upload_blob(f, length=size, overwrite=True, max_concurrency=1)
    up = time.monotonic() - t
    mp = None
    t = time.monotonic()
    n = 0
    for chunk in blob.download_blob(max_concurrency=1).chunks():
        n += len(chunk)
    down = time.monotonic() - t
    blob.delete_blob()
assert n == size, (n, size)
print(json.dumps({"up": size / 1e6 / up, "down": size / 1e6 / down,
                  "mp": (size / 1e6 / mp) if mp else None}))
PY
}

printf '%-10s %12s %13s %6s %16s %14s %13s %6s %9s\n' backend "rbm up MB/s" "raw PUT MB/s" ratio "stock multipart" "rbm down MB/s" "raw GET MB/s" ratio "rbm RSS"
for kind in s3 azure; do
  r="$("$rbm" speed-test storage --storage-config "$work/$kind.yaml" --file "$work/data.bin" --compression none -o json)"
  w="$(raw "$kind")"
  python3 - "$kind" "$r" "$w" <<'PY'
import json, sys
kind, r, w = sys.argv[1], json.loads(sys.argv[2])[0], json.loads(sys.argv[3])
name = {"s3": "s3s-fs", "azure": "Azurite"}[kind]
mp = "%.0f" % w["mp"] if w.get("mp") else "-"
print("%-10s %12.0f %13.0f %6.2f %16s %14.0f %13.0f %6.2f %7.0fMB" % (
    name, r["upload_mb_s"], w["up"], r["upload_mb_s"] / w["up"], mp,
    r["download_mb_s"], w["down"], r["download_mb_s"] / w["down"],
    r["peak_rss_bytes"] / 1e6))
PY
done
echo "size ${size_mib} MiB of random bytes; rbm parts ${part_mib} MiB, ${in_flight} in flight (defaults: 10 MiB, max(2, cores/2)); MB = 10^6 bytes"
