#!/bin/sh
# The classroom's certificates, made here with openssl, in the open (issue 17):
#   1. a lab CA: a private key and a self-signed certificate that students trust (ca.crt is handed out);
#   2. a server key and a certificate signed by that CA, valid for the lecturer's address or name
#      (subjectAltName: the name students type must be in it, or their client refuses the server).
# Every file lands in DIR, which is git-ignored: no private key is ever committed.
#   scripts/lab-ca.sh DIR HOST [MORE_NAMES...]     e.g. scripts/lab-ca.sh classroom/generated 192.168.1.20
# An existing CA is kept (students already trust it); the server certificate is made again when the
# names change. Remove DIR/ca.key and DIR/ca.crt to start a new CA.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: scripts/lab-ca.sh DIR HOST [MORE_NAMES...]   (HOST: the lecturer's IP address or DNS name)" >&2
    exit 2
fi
dir=$1
shift
DAYS=${DAYS:-180}   # one semester and a bit

# subjectAltName entries: IP:... for addresses, DNS:... for names. Anything else is refused.
san=""
for name in "$@"; do
    if printf '%s' "$name" | grep -Eq '^[0-9]{1,3}(\.[0-9]{1,3}){3}$'; then
        entry="IP:$name"
    elif printf '%s' "$name" | grep -Eq '^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$'; then
        entry="DNS:$name"
    else
        echo "lab-ca: '$name' is neither an IPv4 address nor a host name" >&2
        exit 2
    fi
    san="${san:+$san,}$entry"
done

mkdir -p "$dir"
umask 077   # keys readable by their owner only
cd "$dir"

# 1. The lab CA (once). basicConstraints CA:TRUE is what makes it a CA.
if [ ! -f ca.key ] || [ ! -f ca.crt ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days "$DAYS" \
        -keyout ca.key -out ca.crt \
        -subj "/O=Messaging Lab/CN=Messaging Lab classroom CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    echo "lab-ca: new CA $dir/ca.crt"
fi

# 2. The server certificate, for exactly these names (made again when they change).
if [ -f server.crt ] && [ "$(cat server.names 2>/dev/null)" = "$san" ]; then
    echo "lab-ca: $dir/server.crt already valid for $san"
else
    openssl req -new -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
        -subj "/O=Messaging Lab/CN=$1" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
        "$san" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$DAYS" \
        -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext
    printf '%s\n' "$san" >server.names
    echo "lab-ca: new server certificate $dir/server.crt for $san"
fi
chmod 644 ca.crt server.crt
# What a student's client checks: the chain up to ca.crt, and the names.
openssl verify -CAfile ca.crt server.crt >/dev/null
openssl x509 -in server.crt -noout -subject -issuer -ext subjectAltName | sed 's/^/lab-ca:   /'
