//! The metadata quorum of a Sluice cluster: Raft over opaque commands.
//! Work in progress for issue #10; see `docs/REPLICATION.md`.
