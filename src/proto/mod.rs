//! frp v1 wire protocol: frames, messages and auth keys (no I/O). See ../shared/frp-protocol.md.
