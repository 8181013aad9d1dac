#!/usr/bin/env bash
# Vendor the docs pages' assets (Swagger UI for /docs, Redoc for /redoc) from npm into the
# package, so that the pages render with no network. The files are copied byte for byte from
# the published packages; VERSION records each package, its npm integrity and each file's sha256
# (tests/test_docs_offline.py checks the files still match).
#
# Upgrade: change a version below, run `bash scripts/vendor_swagger.sh`, run
# tests/test_docs_offline.py, and commit the files with VERSION.
set -euo pipefail

SWAGGER_UI_VERSION=5.35.0 # swagger-ui-dist, Apache-2.0
REDOC_VERSION=2.5.4       # redoc 2.x (what FastAPI's get_redoc_html is written for), MIT

cd "$(dirname "$0")/.."
dest=src/cofounder_agent/static/docs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name@version, the folder under $dest, then the files to take from the package.
vendor() {
    local spec=$1 folder=$2
    shift 2
    (cd "$work" && npm pack --silent "$spec" >/dev/null)
    local tarball=("$work"/*.tgz)
    mkdir -p "$work/x" && tar -xzf "${tarball[0]}" -C "$work/x"
    rm -rf "${dest:?}/$folder" && mkdir -p "$dest/$folder"
    local file
    for file in "$@"; do
        cp "$work/x/package/$file" "$dest/$folder/$(basename "$file")"
    done
    {
        echo "$folder: npm $spec, integrity $(npm view "$spec" dist.integrity), license $(npm view "$spec" license)"
        (cd "$dest/$folder" && sha256sum -- *) | sed "s|  |  $folder/|"
    } >>"$work/VERSION"
    rm -rf "${tarball[0]}" "$work/x"
}

vendor "swagger-ui-dist@$SWAGGER_UI_VERSION" swagger-ui \
    swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-32x32.png LICENSE NOTICE
vendor "redoc@$REDOC_VERSION" redoc \
    bundles/redoc.standalone.js bundles/redoc.standalone.js.LICENSE.txt LICENSE
{
    echo "# The docs pages' assets, vendored by scripts/vendor_swagger.sh (do not edit by hand)."
    cat "$work/VERSION"
} >"$dest/VERSION"
cat "$dest/VERSION"
