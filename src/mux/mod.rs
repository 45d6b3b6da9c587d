//! yamux (hashicorp spec) sessions running on a glommio executor.
