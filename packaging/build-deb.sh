#!/usr/bin/env bash
# Builds the Debian package target/debian/vswitch_<version>_<arch>.deb: the three binaries,
# man pages and shell completions generated from the clap grammar, the systemd unit and the
# example /etc/vswitch/node.toml (see [package.metadata.deb] in vswitch/Cargo.toml).
# Needs cargo-deb (`cargo install --locked cargo-deb@3.8.0`; .ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p vswitch -p vswitch-cni
out=target/release/packaging
mkdir -p "$out"
target/release/vswitchd --man >"$out/vswitchd.8"
target/release/vswitchctl man >"$out/vswitchctl.8"
gzip -9nf "$out/vswitchd.8" "$out/vswitchctl.8"
target/release/vswitchctl completions bash >"$out/vswitchctl.bash"
target/release/vswitchctl completions zsh >"$out/_vswitchctl"
target/release/vswitchctl completions fish >"$out/vswitchctl.fish"
# Stripped (the build keeps debug info for profiling) and quickly compressed.
cargo deb --no-build --strip --fast -p vswitch --output target/debian/
ls -l target/debian/*.deb
