package sluice.tests;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java side of tests/cluster/test_client_failover.py: an idempotent acks=all producer and a
 * group consumer on one topic, with nothing but standard configuration (the defaults:
 * enable.idempotence=true, acks=all, retries=MAX, delivery.timeout.ms=120 s). No application code
 * reacts to a broker failure: the client retries, refreshes metadata and follows the new leader.
 *
 *   Main failover-client BOOTSTRAP TOPIC GROUP CONTROL_DIR
 *
 * Prints one line per event (the protocol the test parses, shared with the confluent-kafka and
 * kafkajs programs): ACK value partition offset epoch_ms; NACK value error fatal=bool; READ value
 * partition offset; PRODUCER_DONE sent=n unflushed=0 (after CONTROL_DIR/stop-producing and the
 * flush); DONE (after CONTROL_DIR/stop and the consumer's close).
 */
final class Failover {
    private Failover() {}

    private static final long SEND_INTERVAL_NANOS = TimeUnit.MILLISECONDS.toNanos(5);

    private static synchronized void emit(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static void client(String bootstrap, String[] args) throws Exception {
        String topic = args[0];
        String group = args[1];
        Path stopProducing = Path.of(args[2], "stop-producing");
        Path stop = Path.of(args[2], "stop");

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

        Thread reader = new Thread(() -> {
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                consumer.subscribe(List.of(topic));
                while (!Files.exists(stop)) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                        emit("READ " + r.value() + " " + r.partition() + " " + r.offset());
                    }
                }
            }
        }, "consumer");
        // An exception the consumer lets out is a failure of the test, not something to handle.
        reader.setUncaughtExceptionHandler((t, e) -> {
            emit("CLIENT_ERROR " + e + " fatal=true");
            e.printStackTrace();
            System.err.flush();
            Runtime.getRuntime().halt(1);
        });
        reader.start();

        long sent = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            long nextAt = System.nanoTime();
            while (!Files.exists(stopProducing)) {
                String value = "java-" + sent;
                sent++;
                producer.send(new ProducerRecord<>(topic, value), (md, e) -> {
                    if (e == null) {
                        emit("ACK " + value + " " + md.partition() + " " + md.offset() + " "
                                + System.currentTimeMillis());
                    } else {
                        emit("NACK " + value + " " + e.getClass().getSimpleName() + " fatal="
                                + !(e instanceof RetriableException));
                    }
                });
                nextAt += SEND_INTERVAL_NANOS;
                long delay = nextAt - System.nanoTime();
                if (delay > 0) {
                    TimeUnit.NANOSECONDS.sleep(delay);
                } else {
                    nextAt = System.nanoTime();
                }
            }
            producer.flush();
        }
        emit("PRODUCER_DONE sent=" + sent + " unflushed=0");
        reader.join();
        emit("DONE");
    }

    /**
     * DescribeQuorum (KIP-595/KIP-853) through Admin.describeMetadataQuorum: prints
     * "QUORUM leader=ID epoch=N hw=N", then "VOTER id=ID leo=N caught_up_ms=N" per voter and
     * "OBSERVER id=ID leo=N" per observer.
     */
    static void describeQuorum(String bootstrap) throws Exception {
        Properties p = new Properties();
        p.put(org.apache.kafka.clients.admin.AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (org.apache.kafka.clients.admin.Admin admin = org.apache.kafka.clients.admin.Admin.create(p)) {
            org.apache.kafka.clients.admin.QuorumInfo q =
                    admin.describeMetadataQuorum().quorumInfo().get(30, TimeUnit.SECONDS);
            emit("QUORUM leader=" + q.leaderId() + " epoch=" + q.leaderEpoch() + " hw=" + q.highWatermark());
            for (org.apache.kafka.clients.admin.QuorumInfo.ReplicaState v : q.voters()) {
                emit("VOTER id=" + v.replicaId() + " leo=" + v.logEndOffset() + " caught_up_ms="
                        + v.lastCaughtUpTimestamp().orElse(-1L));
            }
            for (org.apache.kafka.clients.admin.QuorumInfo.ReplicaState o : q.observers()) {
                emit("OBSERVER id=" + o.replicaId() + " leo=" + o.logEndOffset());
            }
            for (org.apache.kafka.clients.admin.QuorumInfo.Node n : q.nodes().values()) {
                emit("NODE id=" + n.nodeId() + " endpoints=" + n.endpoints());
            }
        }
    }
}
