package sluice.tests;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** Small helpers shared by the scenarios: clients, topics, bounded reads, checks. */
final class Util {
    private Util() {}

    static final Duration OP_TIMEOUT = Duration.ofSeconds(30);

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
        System.out.println("CHECK ok: " + what);
    }

    static <T> void checkEq(T expected, T actual, String what) {
        if (!java.util.Objects.equals(expected, actual)) {
            throw new AssertionError(what + "\n  expected: " + expected + "\n  actual:   " + actual);
        }
        System.out.println("CHECK ok: " + what);
    }

    /** A value computed by a check: may throw (then it is retried until the deadline). */
    interface Probe<T> {
        T get() throws Exception;
    }

    /**
     * Polls `probe` until `ok` holds (bounded by `timeout`), then records the check. Transaction
     * markers are written after EndTxn returns (Kafka writes them asynchronously), so what a commit
     * or an abort makes visible is awaited, not assumed.
     */
    static <T> T await(String what, Duration timeout, Probe<T> probe, java.util.function.Predicate<T> ok) {
        long deadline = System.nanoTime() + timeout.toNanos();
        T last = null;
        Exception lastErr = null;
        while (true) {
            try {
                last = probe.get();
                lastErr = null;
                if (ok.test(last)) {
                    System.out.println("CHECK ok: " + what);
                    return last;
                }
            } catch (Exception e) {
                lastErr = e;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError(what + ": not within " + timeout + "; last value: " + last
                        + (lastErr == null ? "" : "; last error: " + lastErr));
            }
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
        }
    }

    /** Waits until no transaction is open on `tps`: the last stable offset equals the high watermark. */
    static void awaitStable(String bootstrap, List<TopicPartition> tps) {
        await("no open transaction on " + tps + " (LSO = high watermark)", Duration.ofSeconds(30),
                () -> endOffsets(bootstrap, tps, "read_committed").equals(endOffsets(bootstrap, tps, "read_uncommitted")),
                b -> b);
    }

    static void info(String s) {
        System.out.println("INFO " + s);
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        return Admin.create(p);
    }

    static void createTopic(String bootstrap, String name, int partitions, Map<String, String> config) throws Exception {
        try (Admin a = admin(bootstrap)) {
            NewTopic t = new NewTopic(name, Optional.of(partitions), Optional.empty());
            if (config != null) {
                t.configs(config);
            }
            try {
                a.createTopics(List.of(t)).all().get(30, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }
    }

    /** The finalized `transaction.version` the broker advertises (0 when none: the pre-KIP-890 flow). */
    static int transactionVersion(String bootstrap) {
        try (Admin a = admin(bootstrap)) {
            FeatureMetadata fm = a.describeFeatures().featureMetadata().get(30, TimeUnit.SECONDS);
            FinalizedVersionRange r = fm.finalizedFeatures().get("transaction.version");
            return r == null ? 0 : r.maxVersionLevel();
        } catch (Exception e) {
            info("describeFeatures failed: " + e);
            return -1;
        }
    }

    static Properties producerProps(String bootstrap) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30000);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30000);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        return p;
    }

    static KafkaProducer<String, String> txProducer(String bootstrap, String txnId, Map<String, Object> extra) {
        Properties p = producerProps(bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        if (extra != null) {
            p.putAll(extra);
        }
        return new KafkaProducer<>(p);
    }

    static KafkaProducer<String, String> producer(String bootstrap) {
        return new KafkaProducer<>(producerProps(bootstrap));
    }

    static Properties consumerProps(String bootstrap, String group, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        return p;
    }

    static List<TopicPartition> partitions(String topic, int n) {
        List<TopicPartition> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(new TopicPartition(topic, i));
        }
        return out;
    }

    /** End offsets as the given isolation level sees them (read_committed: the last stable offset). */
    static Map<TopicPartition, Long> endOffsets(String bootstrap, List<TopicPartition> tps, String isolation) {
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, null, isolation))) {
            return new HashMap<>(c.endOffsets(tps, OP_TIMEOUT));
        }
    }

    /**
     * Reads every partition from the beginning to its end offset as seen at the start of the read
     * (for read_committed: the last stable offset), bounded by `timeout`. Values per partition, in order.
     */
    static Map<TopicPartition, List<ConsumerRecord<String, String>>> readAll(String bootstrap, List<TopicPartition> tps,
            String isolation, Duration timeout) {
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, null, isolation))) {
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps, OP_TIMEOUT);
            Map<TopicPartition, List<ConsumerRecord<String, String>>> out = new HashMap<>();
            for (TopicPartition tp : tps) {
                out.put(tp, new ArrayList<>());
            }
            long deadline = System.nanoTime() + timeout.toNanos();
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (c.position(tp, OP_TIMEOUT) < end.get(tp)) {
                        done = false;
                    }
                }
                if (done) {
                    return out;
                }
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("read of " + tps + " (" + isolation + ") did not reach " + end
                            + " within " + timeout + "; read " + out);
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    out.get(new TopicPartition(r.topic(), r.partition())).add(r);
                }
            }
        }
    }

    static Map<TopicPartition, List<String>> values(Map<TopicPartition, List<ConsumerRecord<String, String>>> recs) {
        Map<TopicPartition, List<String>> out = new HashMap<>();
        recs.forEach((tp, l) -> {
            List<String> v = new ArrayList<>();
            for (ConsumerRecord<String, String> r : l) {
                v.add(r.value());
            }
            out.put(tp, v);
        });
        return out;
    }

    /** The class names along an exception's cause chain, outermost first. */
    static List<String> causes(Throwable t) {
        List<String> out = new ArrayList<>();
        for (Throwable c = t; c != null && out.size() < 10; c = c.getCause()) {
            out.add(c.getClass().getSimpleName());
        }
        return out;
    }

    static boolean hasCause(Throwable t, Class<?> k) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (k.isInstance(c)) {
                return true;
            }
        }
        return false;
    }
}
