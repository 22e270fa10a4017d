//! The cluster controller of Sluice (Kafka's KRaft `QuorumController`), as a plain state
//! machine. Work in progress for issue #10; see `docs/REPLICATION.md`.
