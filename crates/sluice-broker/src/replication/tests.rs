//! In-process replication tests (see the module docs of `replication`).
