//! Replication of one partition (Kafka's `Partition` leader/follower logic), IO-free.
//! Work in progress for issue #10; see `docs/REPLICATION.md`.
