//! Configuration: frpc.toml (v1), legacy INI and command-line flags.
