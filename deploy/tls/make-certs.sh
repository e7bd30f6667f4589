#!/usr/bin/env bash
# Make a private certificate authority and one certificate per Dask role for featuremap clusters.
#
#   deploy/tls/make-certs.sh [-o OWNER] [-d DAYS] OUTDIR [EXTRA_HOSTNAME_OR_IP ...]
#
# Writes into OUTDIR (created if missing):
#   ca.pem                              the CA certificate every process trusts (--tls-ca-file)
#   ca-key.pem                          the CA key: keep it off the cluster, it can sign new members
#   scheduler.pem, scheduler-key.pem    --tls-cert / --tls-key of `dask scheduler`
#   worker.pem,    worker-key.pem       --tls-cert / --tls-key of `dask worker`
#   client.pem,    client-key.pem       --tls-cert / --tls-key of `featuremap run|submit|status`
#
# Dask requires mutual TLS: every process proves it holds a certificate signed by the CA, and
# does not check host names (clusters are often addressed by IP). The scheduler certificate
# still lists "scheduler", "localhost", 127.0.0.1 and any extra names given, so tools that do
# check host names work too.
#
# Keys are written with mode 0600. Containers run as uid 10001 (see deploy/docker/Dockerfile);
# on a Linux host give them the keys with `-o 10001:10001` (needs root) or `sudo chown`.
# Never commit the output: deploy/compose/certs/.gitignore ignores everything but its README.
set -euo pipefail

owner=""
days=365
while getopts "o:d:h" flag; do
    case "$flag" in
        o) owner="$OPTARG" ;;
        d) days="$OPTARG" ;;
        h) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "usage: $0 [-o OWNER] [-d DAYS] OUTDIR [EXTRA_HOSTNAME_OR_IP ...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ "$#" -lt 1 ]; then
    echo "usage: $0 [-o OWNER] [-d DAYS] OUTDIR [EXTRA_HOSTNAME_OR_IP ...]" >&2
    exit 2
fi
outdir="$1"
shift
command -v openssl >/dev/null || { echo "make-certs.sh: openssl is required" >&2; exit 2; }

mkdir -p "$outdir"
umask 077
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

# Subject alternative names: a name that looks like an IPv4/IPv6 address is an IP entry.
san_entry() {
    case "$1" in
        *[!0-9.]*) case "$1" in *:*) echo "IP:$1" ;; *) echo "DNS:$1" ;; esac ;;
        *) echo "IP:$1" ;;
    esac
}

new_key() {  # EC P-256: small, fast, accepted by Python's ssl everywhere
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

new_key "$outdir/ca-key.pem"
openssl req -x509 -new -key "$outdir/ca-key.pem" -sha256 -days "$days" \
    -subj "/O=featuremap/CN=featuremap-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$outdir/ca.pem"

for role in scheduler worker client; do
    sans="DNS:$role,DNS:localhost,IP:127.0.0.1"
    for host in "$@"; do
        sans="$sans,$(san_entry "$host")"
    done
    new_key "$outdir/$role-key.pem"
    openssl req -new -key "$outdir/$role-key.pem" -subj "/O=featuremap/CN=featuremap-$role" \
        -out "$workdir/$role.csr"
    cat >"$workdir/$role.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EXT
    openssl x509 -req -in "$workdir/$role.csr" -CA "$outdir/ca.pem" -CAkey "$outdir/ca-key.pem" \
        -CAcreateserial -CAserial "$workdir/ca.srl" -sha256 -days "$days" \
        -extfile "$workdir/$role.ext" -out "$outdir/$role.pem" 2>/dev/null
done

chmod 0644 "$outdir"/ca.pem "$outdir"/scheduler.pem "$outdir"/worker.pem "$outdir"/client.pem
chmod 0600 "$outdir"/*-key.pem
if [ -n "$owner" ]; then
    chown "$owner" "$outdir"/scheduler-key.pem "$outdir"/worker-key.pem "$outdir"/client-key.pem
fi
echo "wrote CA and scheduler/worker/client certificates to $outdir"
