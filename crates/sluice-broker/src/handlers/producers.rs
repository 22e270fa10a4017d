//! DescribeProducers (API 61, KIP-664): the producers each partition tracks — epoch, last
//! sequence, last timestamp, last coordinator epoch and the start offset of the open
//! transaction (-1 if none). `kafka-transactions.sh describe-producers` and `find-hanging`
//! use it; `abort --start-offset` takes the coordinator epoch from it.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::s;
use crate::broker::Broker;

pub fn describe_producers(
    broker: &Broker,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let resp = PartitionResponse::default().with_partition_index(index);
                    let described = broker
                        .replica(&name, index)
                        .and_then(|r| r.describe_producers());
                    let producers = match described {
                        Ok(p) => p,
                        Err(e) => {
                            return resp
                                .with_error_code(e.code)
                                .with_error_message(Some(s(e.message)))
                        }
                    };
                    let producers = producers
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(i32::from(p.producer_epoch))
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp)
                                .with_coordinator_epoch(p.coordinator_epoch)
                                .with_current_txn_start_offset(p.current_txn_start_offset)
                        })
                        .collect();
                    resp.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
